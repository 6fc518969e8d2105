"""The docs cannot go stale: every ``python -m kmexp ...`` command they show still composes.

Which commands: every ``python -m kmexp`` invocation in a code block of README.md or
docs/*.md, fenced (```, ```console, ```bash, ```sh, ```shell, ```text) or indented by
four spaces. A command may start with a ``$ `` prompt and ``VAR=value`` assignments,
may follow ``&&``, ``;`` or ``|`` (``pip install . && python -m kmexp ...``), may go on
over lines that end in ``\\``, and may end in a ``# comment``.

How each is checked, without training: ``python -m kmexp <its overrides> --cfg job``
in a subprocess, which composes the config (defaults lists, typed schemas) and prints
it. It must exit 0 and print a config (a ``seed:`` line). Sweep syntax means nothing
without a sweep, so ``-m``/``--multirun`` is dropped and each swept value becomes its
first value: ``language=en,fr`` -> ``language=en``, ``'model.dropout=interval(0.1,0.3)'``
-> ``model.dropout=0.1``, ``choice(...)``/``range(...)`` -> their first value. Sweep
presets (``+sweep=locales``) and ``hparams_search=optuna`` are kept: they set only
``hydra.sweeper.*``, which composes in a single run too and which ``--cfg job`` leaves
out. The command's own ``VAR=value`` prefix is dropped; the subprocess gets
``KMEXP_DATA_DIR`` when it is set here, and ``WANDB_MODE=offline``.

The convention for error examples: a command whose output, shown in the same code
block before the next command, has a line starting with ``kmexp: error:`` is an error
example::

    $ python -m kmexp loss=nope
    kmexp: error: In 'config': Could not find 'loss/nope'; available options: ...

If it fails under ``--cfg job`` (an unknown key, option or type: composition errors),
the last line of stderr must be that documented line, up to the first ``...`` (where
the doc shortens a message). If it composes, it passes: its error comes from a value
check, missing hardware or training, which ``--cfg job`` does not reach.

The commands run a few at a time (each process starts Python and Hydra), so the
composing test is marked slow; the cheap checks beside it are not.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep
from hydra.errors import HydraException

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250
OUTSIDE_FOLDER = "../shared"  # where the project's data and reference used to come from; users do not have it

FENCE = re.compile(r"^(```|~~~)\s*([\w-]*)")
SHELL_BLOCKS = {"", "console", "bash", "sh", "shell", "text"}
SHELL_OPERATORS = {";", "&", "&&", "|", "||"}
ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*")
ERROR_LINE = "kmexp: error:"


@dataclass(frozen=True)
class DocCommand:
    doc: str  # the file, relative to the repository
    line: int  # where the command starts
    shown: str  # the command as the doc shows it
    args: tuple[str, ...]  # what follows ``python -m kmexp``
    error: str | None  # the documented ``kmexp: error:`` line of an error example

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"

    def job_args(self) -> tuple[str, ...]:
        """The arguments that compose this command's config as a single run, and print it."""
        args = list(self.args)
        if "--cfg" in args:  # the doc already asks for a config: print the job's, as for every command
            del args[args.index("--cfg") : args.index("--cfg") + 2]
        single = [_first_value(arg) for arg in args if arg not in ("-m", "--multirun")]
        return (*single, "--cfg", "job")


_PARSER = OverridesParser.create()


def _first_value(arg: str) -> str:
    """A sweep override as its first value (``language=en,fr`` -> ``language=en``); anything else as it is."""
    if arg.startswith("-"):
        return arg
    try:
        override = _PARSER.parse_override(arg)
    except HydraException:
        return arg  # not an override Hydra can parse: kmexp will say so, and the test compares the line
    if not override.is_sweep_override():
        return arg
    sweep = override.value()
    first = str(sweep.start) if isinstance(sweep, IntervalSweep) else next(override.sweep_string_iterator())
    return f"{override.get_key_element()}={first}"


def code_blocks(text: str) -> list[tuple[int, list[str]]]:
    """The shell-like code blocks of a markdown text: (line number of the block's first line, its lines)."""
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence:
            end = i + 1
            while end < len(lines) and not lines[end].startswith(fence.group(1)):
                end += 1
            if fence.group(2) in SHELL_BLOCKS:
                blocks.append((i + 2, lines[i + 1 : end]))
            i = end + 1
        elif lines[i].startswith("    ") and (i == 0 or not lines[i - 1].strip()):
            start = i
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                i += 1
            blocks.append((start + 1, [line[4:] for line in lines[start:i]]))
        else:
            i += 1
    return blocks


def logical_lines(first: int, lines: list[str]) -> list[tuple[int, str]]:
    """Lines with their ``\\`` continuations joined, each with the number of the line it starts on."""
    joined, pending, start = [], "", None
    for number, line in enumerate(lines, first):
        start = number if start is None else start
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append((start, pending + line))
        pending, start = "", None
    if pending:
        joined.append((start, pending))
    return joined


def kmexp_args(line: str) -> list[tuple[str, ...]]:
    """The arguments of each ``python -m kmexp`` in one shell line (after a ``$ `` prompt, if any)."""
    if "python -m kmexp" not in line:
        return []
    lexer = shlex.shlex(line.strip().removeprefix("$ "), posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        words = list(lexer)
    except ValueError:  # unbalanced quotes: output, not a command
        return []
    found, segment = [], []
    for word in [*words, ";"]:
        if word not in SHELL_OPERATORS:
            segment.append(word)
            continue
        while segment and ASSIGNMENT.fullmatch(segment[0]):
            segment.pop(0)  # VAR=value before the command
        if segment[:3] == ["python", "-m", "kmexp"]:
            found.append(tuple(segment[3:]))
        segment = []
    return found


def doc_commands(path: Path) -> list[DocCommand]:
    doc = path.relative_to(ROOT).as_posix()
    commands = []
    for first, block in code_blocks(path.read_text(encoding="utf-8")):
        lines = logical_lines(first, block)
        for i, (number, line) in enumerate(lines):
            for args in kmexp_args(line):
                shown_after = []
                for _, after in lines[i + 1 :]:
                    if kmexp_args(after):
                        break
                    shown_after.append(after.strip())
                error = next((out for out in shown_after if out.startswith(ERROR_LINE)), None)
                commands.append(DocCommand(doc, number, line.strip(), args, error))
    return commands


COMMANDS = [command for path in DOCS for command in doc_commands(path)]


def run_kmexp(args: tuple[str, ...], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline"}
    if "KMEXP_DATA_DIR" in os.environ:
        env["KMEXP_DATA_DIR"] = os.environ["KMEXP_DATA_DIR"]
    return subprocess.run(
        [sys.executable, "-m", "kmexp", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def composed(request, tmp_path_factory) -> dict[tuple[str, ...], subprocess.CompletedProcess]:
    """``--cfg job`` of every selected command, run once per distinct argument list, a few at a time."""
    selected = {
        item.callspec.params["command"].job_args()
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_command_composes"
    }
    cwd = tmp_path_factory.mktemp("docs")  # nothing lands in the checkout
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        return dict(zip(selected, pool.map(lambda args: run_kmexp(args, cwd), selected)))


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS, ids=[command.id for command in COMMANDS])
def test_command_composes(command: DocCommand, composed):
    done = composed[command.job_args()]
    stderr = done.stderr.strip().splitlines()
    last = stderr[-1] if stderr else ""
    where = f"{command.id}: {command.shown}\n  checked as: python -m kmexp {shlex.join(command.job_args())}"
    if command.error is not None and done.returncode != 0:
        documented = command.error.split("...")[0].rstrip()
        assert last.startswith(documented), f"{where}\n  the doc says: {command.error}\n  kmexp says:   {last}"
        return
    assert done.returncode == 0, f"{where}\n  exit status {done.returncode}: {last}"
    assert re.search(r"^seed: ", done.stdout, re.MULTILINE), f"{where}\n  printed no config:\n{done.stdout[-2000:]}"


def test_the_docs_show_commands():
    assert len(COMMANDS) >= 10, [command.id for command in COMMANDS]
    assert any(command.error for command in COMMANDS), "no error example found: is the convention still followed?"


def test_command_extraction():
    text = "\n".join([
        "Text with `python -m kmexp inline=1`, not a block.",
        "",
        "    KMEXP_DATA_DIR=/data python -m kmexp -m language=en,fr \\",
        "        'model.dropout=interval(0.1,0.3)'   # a comment",
        "    pip install . && python -m kmexp.report sweeps/x; python -m kmexp seed=1",
        "",
        "```console",
        "$ python -m kmexp loss=nope",
        "kmexp: error: In 'config': Could not find 'loss/nope'; ...",
        "```",
        "```python",
        'print("python -m kmexp in Python is not a command")',
        "```",
    ])
    found = [
        (number, args)
        for first, block in code_blocks(text)
        for number, line in logical_lines(first, block)
        for args in kmexp_args(line)
    ]
    assert found == [
        (3, ("-m", "language=en,fr", "model.dropout=interval(0.1,0.3)")),
        (5, ("seed=1",)),
        (8, ("loss=nope",)),
    ]
    sweep = DocCommand("x.md", 3, "", found[0][1], None)
    assert sweep.job_args() == ("language=en", "model.dropout=0.1", "--cfg", "job")
    tagged = DocCommand("x.md", 1, "", ("optimizer.learning_rate=tag(log,interval(0.001,0.3))", "+sweep=locales"), None)
    assert tagged.job_args() == ("optimizer.learning_rate=0.001", "+sweep=locales", "--cfg", "job")


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move the rest to docs/"


def test_readme_links_every_docs_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [path.name for path in sorted((ROOT / "docs").glob("*.md")) if f"(docs/{path.name})" not in readme]
    assert not missing, f"README.md does not link {missing}"


def test_readme_test_command_is_what_ci_runs():
    command = 'pip install -e ".[dev]" && python -m pytest'
    assert f"    {command}\n" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert command in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_no_page_names_a_folder_outside_the_repository():
    files = [ROOT / "README.md", *(ROOT / "docs").rglob("*"), *(ROOT / "benchmarks").rglob("*")]
    naming = [
        path.relative_to(ROOT).as_posix()
        for path in files
        if path.is_file() and "__pycache__" not in path.parts and OUTSIDE_FOLDER.encode() in path.read_bytes()
    ]
    assert not naming, f"these files name {OUTSIDE_FOLDER}, which users do not have: {naming}"
