"""Start-up: how fast the command line answers, against a bare ``import tensorflow``, in one run.

Each command runs as a fresh process, the commands taking turns (the order
rotates every repeat), and the median wall times are compared with the median of
``python -c "import tensorflow"`` measured in the same run:

- ``python -m kmexp --help``;
- ``python -m kmexp --cfg job language=fr`` (compose and print, no job);
- ``python -m kmexp optimizer.learning_rate=-1 logger=none`` (a validation error);
- ``python -c "import kmexp"``.

None of them imports TensorFlow (tests/test_architecture.py checks that), so the
ratio says how much of TensorFlow's start-up a user waits for before an answer.
The target for ``--help`` is at most 0.3.

    python benchmarks/startup.py                 # 7 repeats
    python benchmarks/startup.py --repeats 15

Writes ``benchmarks/results/startup.md``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASELINE = "import tensorflow"
COMMANDS = {
    BASELINE: ["-c", "import tensorflow"],
    "python -m kmexp --help": ["-m", "kmexp", "--help"],
    "python -m kmexp --cfg job language=fr": ["-m", "kmexp", "--cfg", "job", "language=fr"],
    "python -m kmexp optimizer.learning_rate=-1 logger=none (error)": [
        "-m", "kmexp", "optimizer.learning_rate=-1", "logger=none",
    ],
    'python -c "import kmexp"': ["-c", "import kmexp"],
}


def wall_time(args: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, check=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "startup.md")
    args = parser.parse_args()

    names = list(COMMANDS)
    times: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as cwd:  # the error run writes its run folder here
        for name in names:  # one untimed round: disk caches warm for every command alike
            wall_time(COMMANDS[name], Path(cwd))
        for repeat in range(args.repeats):
            for name in names[repeat % len(names):] + names[: repeat % len(names)]:
                times[name].append(wall_time(COMMANDS[name], Path(cwd)))
            print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)

    baseline = statistics.median(times[BASELINE])
    lines = [
        "# Start-up: time to an answer, against `import tensorflow`",
        "",
        f"{datetime.date.today()}, {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"each a fresh process, median of {args.repeats}, commands taking turns (`benchmarks/startup.py`).",
        "",
        "| command | median s | min s | ratio to `import tensorflow` |",
        "|---|---:|---:|---:|",
    ]
    for name in names:
        median = statistics.median(times[name])
        lines.append(f"| `{name}` | {median:.2f} | {min(times[name]):.2f} | {median / baseline:.2f} |")
    lines.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
