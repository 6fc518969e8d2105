"""The shape of the package: no import cycle, a light start-up, private APIs in one module.

The import graph is read from the source (every ``import``, at module level or
inside a function), so a cycle fails here before it fails a user. The start-up
checks run real commands in fresh processes under ``python -X importtime``,
which lists every module a process imports.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import files_overrides

import kmexp

PACKAGE = Path(kmexp.__file__).resolve().parent
HEAVY = ("tensorflow", "keras", "tf_keras", "tensorflow_text")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported_modules(name: str, path: Path) -> set[str]:
    """The kmexp modules that ``name`` imports, anywhere in its source.

    ``from kmexp.x import y`` imports ``kmexp.x.y`` when that is a module, else
    ``kmexp.x``; importing ``kmexp.a.b`` also runs the package ``kmexp.a``, unless
    the importer lives inside it.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for target in targets:
            if not target.startswith("kmexp."):
                continue
            parts = target.split(".")
            for i in range(2, len(parts) + 1):
                ancestor = ".".join(parts[:i])
                if ancestor in MODULES and not (name == ancestor or name.startswith(ancestor + ".")):
                    found.add(ancestor)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first = last), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_inside_kmexp():
    graph = {name: imported_modules(name, path) for name, path in MODULES.items()}
    assert "kmexp.runs" in graph["kmexp.report.collect"]  # the graph sees real imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_report_code_lives_under_report_and_reads_runs_not_training():
    graph = {name: imported_modules(name, path) for name, path in MODULES.items()}
    assert not (PACKAGE / "wandb_report.py").exists()
    for name in (n for n in graph if n.startswith("kmexp.report")):
        assert not {m for m in graph[name] if m.startswith(("kmexp.training", "kmexp.experiment", "kmexp.sweep"))}, name
        # A report is written where TensorFlow is not installed, or not wanted: it never imports it.
        source = MODULES[name].read_text(encoding="utf-8")
        assert not re.search(r"^\s*(?:import|from)\s+(?:tensorflow|keras)\b", source, re.M), name


def test_private_apis_of_other_libraries_are_used_in_compat_only():
    private = re.compile(r"\b(?:keras\.src|tensorflow\.python|hydra\._internal)\b|\._gradient_registry|\._initial_epoch")
    users = sorted(module_name(p) for p in PACKAGE.rglob("*.py") if private.search(p.read_text(encoding="utf-8")))
    assert users == ["kmexp.compat"]


def test_no_module_spells_a_run_file_name_but_runs():
    """metrics.json, model.keras and history.csv are named in kmexp.runs; elsewhere only in prose."""
    literal = re.compile(r"""["'](?:metrics\.json|model\.keras|history\.csv|overrides\.yaml|sweep\.json|report\.html|results\.csv)["']""")
    users = sorted(module_name(p) for p in PACKAGE.rglob("*.py") if literal.search(p.read_text(encoding="utf-8")))
    assert users == ["kmexp.runs"]


# --- start-up: what loads before a job starts ----------------------------------------------------


def imports_of(args: list[str], cwd: Path, env: dict | None = None) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run ``python -X importtime ARGS``; return the process and the top-level packages it imported."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *args], capture_output=True, text=True, cwd=cwd, timeout=120,
        env={**os.environ, "WANDB_MODE": "offline", **(env or {})},
    )
    loaded = {m.group(1).split(".")[0] for m in re.finditer(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)", result.stderr, re.M)}
    return result, loaded


def test_import_kmexp_loads_no_tensorflow(tmp_path):
    result, loaded = imports_of(["-c", "import kmexp"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "kmexp" in loaded and not loaded & set(HEAVY)


@pytest.mark.parametrize(
    ("args", "exit_code", "says"),
    [
        (["-m", "kmexp", "--help"], 0, "encoder: byte, char_ngram"),
        (["-m", "kmexp", "--version"], 0, "kmexp 0.1.0 tensorflow 2.21"),
        (["-m", "kmexp", "--cfg", "job", "language=fr"], 0, "code: fra_Latn"),
        (["-m", "kmexp", "trainer.epoch=3"], 1, "kmexp: error: "),  # composition: an unknown key
        (["-m", "kmexp", "loss=nope"], 1, "kmexp: error: "),  # composition: an unknown option
        (["-m", "kmexp", "optimizer.learning_rate=-1", "logger=none"], 1, "optimizer.learning_rate=-1.0 is not allowed"),
        (["-m", "kmexp", "language=generic", "language.code=xx_Fake", "logger=none"], 1, "closest: "),
        (["-m", "kmexp.report", "--help"], 0, "usage:"),
        (["-m", "kmexp.report", "nowhere"], 2, "nowhere"),
        (["-m", "kmexp.predict", "--help"], 0, "usage:"),
    ],
    ids=["help", "version", "cfg-job", "unknown-key", "unknown-option", "bad-value", "bad-code", "report-help", "report-error",
         "predict-help"],
)
def test_the_cli_answers_before_tensorflow_loads(args, exit_code, says, tmp_path):
    result, loaded = imports_of(args, tmp_path)
    assert result.returncode == exit_code, result.stderr[-2000:]
    assert says in result.stdout + result.stderr
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_a_data_error_is_found_after_tensorflow_loads_but_validation_before(small_data, tmp_path):
    """The contrast: a job that passes validation does import TensorFlow (so the check above means something)."""
    result, loaded = imports_of(
        ["-m", "kmexp", *files_overrides(small_data), "data.train=nope.tsv", "logger=none"], tmp_path
    )
    assert result.returncode == 1 and "nope.tsv" in result.stderr
    assert "tensorflow" in loaded


def test_help_lists_the_groups_users_pick_and_examples_that_compose(tmp_path):
    result = subprocess.run([sys.executable, "-m", "kmexp", "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0
    for internal in ("schema", "_common", "encoder_training", "language_encoder", "$APP_CONFIG_GROUPS", "${"):
        assert internal not in result.stdout, internal
    assert "language: am, ar," in result.stdout and "optimizer: adagrad, adam," in result.stdout
    lines = [line.strip() for line in result.stdout.split("Examples:")[1].split("Config groups")[0].splitlines()]
    examples = [re.split(r"\s{2,}", line)[0].split()[3:] for line in lines if line.startswith("python -m kmexp ")]
    assert len(examples) >= 5
    for args in examples:  # every example composes
        args = [re.sub(r"=([^,]*),.*", r"=\1", a) for a in args if a not in ("-m", "--cfg", "job")]  # a sweep's first job
        done = subprocess.run([sys.executable, "-m", "kmexp", *args, "--cfg", "job"], capture_output=True, text=True,
                              cwd=tmp_path, env={**os.environ, "WANDB_MODE": "offline"})
        assert done.returncode == 0, (args, done.stderr[-1000:])
