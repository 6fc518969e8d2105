"""Experiment loggers: W&B (offline by default), CSV, or none.

Every logger has the same five calls, made by the training program in order:

- ``start(config, choices=..., overrides=..., group=...)`` once, first;
- ``log_epoch(epoch, logs)`` once per epoch;
- ``log_summary(metrics)`` and ``log_evaluation(labels, reports, model_path)`` once a run
  has completed (``reports`` maps a split name to its ``classification_report``);
- ``finish(status)`` exactly once, whatever happened.

``status`` is the run's ``metrics.json`` status: ``completed``, ``failed`` or ``interrupted``.
``wandb_run`` says, before ``start``, which W&B run the logger will write (None when it
writes none), so that ``metrics.json`` names it from the moment the run starts; once an
offline run has started, it also names the run's own folder, what ``wandb sync`` takes.

What a logger writes goes through ``kmexp.secrets`` first: the resolved config
can hold a secret (``+note=${oc.env:MY_API_TOKEN}``), and so can the overrides.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from kmexp import compat
from kmexp.errors import KmexpError
from kmexp.secrets import Secrets, redacted_argv

# W&B rejects longer tags: this is the service's limit, not a setting.
MAX_TAG_LENGTH = 64
_PER_CLASS_COLUMNS = ["label", "precision", "recall", "f1", "support"]


class NullLogger:
    """Logs nothing: the run folder's own files are the record."""

    def __init__(self, run_dir: str):
        self.run_dir = Path(run_dir)

    @property
    def wandb_run(self) -> dict | None:
        """The W&B run this logger writes (``metrics.json``'s ``wandb``), or None."""
        return None

    def start(
        self, config: dict, *, choices: Mapping[str, str], overrides: Sequence[str], group: str | None
    ) -> None:
        pass

    def log_epoch(self, epoch: int, logs: dict) -> None:
        pass

    def log_summary(self, metrics: dict) -> None:
        pass

    def log_evaluation(self, labels: Sequence[str], reports: Mapping[str, dict], model_path: Path) -> None:
        pass

    def finish(self, status: str) -> None:
        pass


class CSVLogger(NullLogger):
    """Per-epoch rows and the summary in ``<run_dir>/<filename>``; per-class scores in ``per_class_filename``."""

    def __init__(self, run_dir: str, filename: str, per_class_filename: str):
        super().__init__(run_dir)
        self.path = self.run_dir / filename
        self.per_class_path = self.run_dir / per_class_filename
        self._rows: list[dict] = []

    def log_epoch(self, epoch: int, logs: dict) -> None:
        self._rows.append({"epoch": epoch, **logs})

    def log_summary(self, metrics: dict) -> None:
        self._rows.append({"epoch": "summary", **metrics})

    def log_evaluation(self, labels: Sequence[str], reports: Mapping[str, dict], model_path: Path) -> None:
        """One row per split and label, so a spreadsheet can compare classes without reading JSON."""
        rows = [{"split": split, **row} for split, report in reports.items() for row in per_class_rows(labels, report)]
        _write_csv(self.per_class_path, ["split", *_PER_CLASS_COLUMNS], rows)

    def finish(self, status: str) -> None:
        fields: list[str] = []
        for row in self._rows:
            fields.extend(key for key in row if key not in fields)
        _write_csv(self.path, [*fields, "status"], [{**row, "status": status} for row in self._rows])


class WandbLogger(NullLogger):
    """One W&B run per job, its files inside the run folder.

    Offline unless ``mode`` is ``online``. An offline run starts in a background
    thread while the data loads and the model trains: once TensorFlow is loaded,
    importing W&B and starting a run takes ~1.3 s (most of it W&B importing its
    launch module, whose pydantic models scan every loaded module on Python < 3.13),
    and overlapped it costs the job ~0.5 s (benchmarks/results/overhead.md). Epochs
    logged before the run is ready are sent, in order, once it is; a start that
    failed fails the job at the next call. An online run starts in the foreground,
    so that a missing login fails the job before it trains. For an offline run, error reporting
    is switched off and artifact staging moves into the run folder *only while
    the run lives* (the variables are restored at ``finish``), so nothing leaks
    into a later online run of the same process.

    W&B's background service outlives an offline run: the next job of an
    in-process sweep starts its run on the same service (``reinit="create_new"``),
    instead of waiting for a new one (benchmarks/results/sweep_throughput.md). An
    online run's ``finish`` tears the service down, because the service reads error
    reporting once, when it starts, and a later offline run must not report to W&B.
    """

    def __init__(
        self,
        run_dir: str,
        project: str,
        entity: str | None,
        mode: str,
        job_type: str,
        tag_groups: Sequence[str],
        log_model: bool,
        init_timeout_s: float,
        system_metrics: bool,
        console: str,
        quiet: bool,
    ):
        super().__init__(run_dir)
        self.project = project
        self.entity = entity
        self.mode = mode
        self.job_type = job_type
        self.tag_groups = list(tag_groups)
        self.log_model = log_model
        self.init_timeout_s = init_timeout_s
        self.system_metrics = system_metrics
        self.console = console
        self.quiet = quiet
        self.run = None
        self._started = False
        self._starting: Future | None = None  # the offline run's start, while it runs in the background
        self._pending: list[tuple[int, dict]] = []  # epochs logged before the run was ready
        self._epoch_keys: set[str] = set()  # the keys logged per epoch (kept out of the summary)
        self._scope = contextlib.ExitStack()
        self._offline_run: Path | None = None  # <wandb_dir>/offline-run-<time>-<id>, once started
        # Chosen here rather than by wandb.init, so that metrics.json names the run before it starts:
        # a run killed outright (SIGKILL) can still be matched with its W&B files. W&B's own ids are
        # 8 characters of [a-z0-9] too.
        self.run_id = uuid.uuid4().hex[:8]

    @property
    def wandb_run(self) -> dict | None:
        """The run's id, mode and the folder of its files; ``sync``: the offline run's own folder, once started."""
        if self.mode == "disabled":
            return None
        run = {"id": self.run_id, "mode": self.mode, "dir": str(self.wandb_dir)}
        if self._offline_run is not None:
            run["sync"] = str(self._offline_run)
        return run

    @property
    def wandb_dir(self) -> Path:
        """W&B writes ``<run_dir>/wandb/<offline-run-...>``; ``wandb sync`` takes those folders."""
        return self.run_dir / "wandb"

    def start(
        self, config: dict, *, choices: Mapping[str, str], overrides: Sequence[str], group: str | None
    ) -> None:
        self.wandb_dir.mkdir(parents=True, exist_ok=True)
        self._started = True
        self._scope.enter_context(_environment(offline_environment(self.wandb_dir) if self.mode != "online" else {}))
        secrets = Secrets.from_environ()
        # W&B saves the config, the tags and the command line (its run metadata): all three redacted.
        config, overrides = secrets.data(config), secrets.data(list(overrides))
        start = functools.partial(self._init, secrets, config, choices, overrides, group)
        if self.mode == "online":
            self.run = start()
            return
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kmexp-wandb-start")
        self._starting = pool.submit(start)
        pool.shutdown(wait=False)  # its one thread ends with the start; the job goes on meanwhile

    def _init(self, secrets: Secrets, config: dict, choices: Mapping[str, str], overrides: Sequence[str],
              group: str | None):
        import wandb

        compat.wandb_lists_packages_once()
        try:
            with redacted_argv(secrets):
                return wandb.init(
                    id=self.run_id,
                    project=self.project,
                    entity=self.entity,
                    dir=str(self.run_dir),
                    mode=self.mode,
                    group=group,
                    job_type=self.job_type,
                    # The options picked go in the config too, so W&B can filter and plot by them.
                    config={**config, "choices": dict(choices)},
                    tags=run_tags(choices, overrides, self.tag_groups),
                    reinit="create_new",  # one run per job; the last job's is finished already
                    settings=wandb.Settings(
                        init_timeout=self.init_timeout_s,
                        x_disable_stats=not self.system_metrics,
                        console=self.console,
                        silent=self.quiet,
                    ),
                )
        except wandb.errors.Error as err:
            # Not logged in, or the server unreachable within init_timeout_s: one line, and the way out.
            raise KmexpError(f"W&B could not start the run (logger.mode={self.mode}): {err} "
                             "(or log offline: logger.mode=offline)") from err

    def _ready(self):
        """The run, once started (waiting for a background start), with the epochs logged so far sent to it."""
        if self._starting is not None:
            starting, self._starting = self._starting, None
            self.run = starting.result()  # a failed start raises its error here
        if self.mode == "offline" and self._offline_run is None:
            self._offline_run = Path(self.run.dir).parent
        for epoch, logs in self._pending:
            row = {"epoch": epoch, **logs}
            self._keep_out_of_summary(row)
            self.run.log(row, step=epoch)
        self._pending.clear()
        return self.run

    def _keep_out_of_summary(self, row: dict) -> None:
        """Per-epoch keys stay in the history only.

        W&B's summary keeps the last logged value of each key: the last epoch's ``val_*``,
        stale once early stopping restores the best epoch. The summary holds the saved
        model's scores instead, one name each (``log_summary``: ``dev/...``, ``test/...``).
        """
        for key in row.keys() - self._epoch_keys:
            self.run.define_metric(key, summary="none")
            self._epoch_keys.add(key)

    def log_epoch(self, epoch: int, logs: dict) -> None:
        self._pending.append((epoch, dict(logs)))
        if self._starting is None or self._starting.done():  # training does not wait for W&B to start
            self._ready()

    def log_summary(self, metrics: dict) -> None:
        self._ready().summary.update(metrics)

    def log_evaluation(self, labels: Sequence[str], reports: Mapping[str, dict], model_path: Path) -> None:
        """Per-class tables and confusion-matrix plots for each split, then the model if asked for."""
        import wandb

        self._ready()
        media = {}
        for split, report in reports.items():
            rows = [[row[column] for column in _PER_CLASS_COLUMNS] for row in per_class_rows(labels, report)]
            media[f"{split}/per_class"] = wandb.Table(columns=_PER_CLASS_COLUMNS, data=rows)
            y_true, y_pred = pairs_from_counts(report["confusion_matrix"])
            media[f"{split}/confusion_matrix"] = wandb.plot.confusion_matrix(
                y_true=y_true, preds=y_pred, class_names=list(labels), title=f"Confusion matrix ({split})"
            )
        self.run.log(media)
        if self.log_model:
            self._log_model(model_path, labels, reports)

    def _log_model(self, model_path: Path, labels: Sequence[str], reports: Mapping[str, dict]) -> None:
        """``model.keras`` as a versioned artifact, named after the run like W&B's own checkpoints."""
        import wandb

        scores = {split: {k: v for k, v in report.items() if isinstance(v, float)} for split, report in reports.items()}
        artifact = wandb.Artifact(f"model-{self.run.id}", type="model", metadata={"labels": list(labels), **scores})
        artifact.add_file(str(model_path))
        self.run.log_artifact(artifact)

    def finish(self, status: str) -> None:
        """Close the run (exit code 1 unless it completed) and restore what ``start`` changed."""
        with self._scope:  # closed last, whatever fails before
            if self._starting is not None:
                # Wait for a background start, so its run is closed too. The job already failed or was
                # stopped if it never called log_summary: that error is the one to report, not W&B's.
                with contextlib.suppress(Exception):
                    self._ready()
            ran = self.run is not None
            if ran:
                self.run.finish(exit_code=0 if status == "completed" else 1)
                self.run = None
            # An online run's service (error reporting on) must not serve a later offline run. After a
            # failed start too: the service may be what failed.
            if self._started and (self.mode == "online" or not ran):
                import wandb

                wandb.teardown()
            self._started = False


def offline_environment(wandb_dir: Path) -> dict[str, str]:
    """Variables an offline run sets while it lives, so that it makes no network call.

    W&B's service reports its own errors to W&B's servers unless
    ``WANDB_ERROR_REPORTING`` is false, and stages tables and artifacts in the
    user's data folder (``~/.local/share/wandb``) until they are synced; an
    offline run's tables and model go to ``<run_dir>/wandb/artifacts/staging``
    instead, so deleting a job's folder deletes all of it.
    """
    return {"WANDB_ERROR_REPORTING": "false", "WANDB_DATA_DIR": str(wandb_dir)}


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for a block and put back what was there before."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_tags(choices: Mapping[str, str], overrides: Sequence[str], tag_groups: Sequence[str]) -> list[str]:
    """``group=option`` for the tagged config groups, then the job's overrides: ordered, no repeats, each fitting W&B."""
    tags = [f"{group}={choices[group]}" for group in tag_groups if group in choices]
    return list(dict.fromkeys(shorten_tag(tag) for tag in [*tags, *overrides]))


def shorten_tag(tag: str, limit: int = MAX_TAG_LENGTH) -> str:
    """Fit a ``key=value`` tag in ``limit`` characters, keeping the key and the value's end.

    A value's end is what tells two long values apart (``data.train=…/fr/train.tsv``).
    """
    if len(tag) <= limit:
        return tag
    key, sep, value = tag.partition("=")
    room = limit - len(key) - len(sep) - 1  # 1 for the ellipsis
    if sep == "" or room < 8:
        return tag[: limit - 1] + "…"
    return f"{key}{sep}…{value[-room:]}"


def per_class_rows(labels: Sequence[str], report: dict) -> list[dict]:
    """A split's ``per_class`` scores as rows, in label order."""
    return [{"label": label, **report["per_class"][label]} for label in labels]


def pairs_from_counts(counts: Sequence[Sequence[int]]) -> tuple[list[int], list[int]]:
    """The (true, predicted) label index pairs a confusion matrix counts (rows are true labels)."""
    y_true: list[int] = []
    y_pred: list[int] = []
    for i, row in enumerate(counts):
        for j, count in enumerate(row):
            y_true.extend([i] * int(count))
            y_pred.extend([j] * int(count))
    return y_true, y_pred


def _write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    rows = Secrets.from_environ().data(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
