"""Run every benchmark in this directory (``bench_*.py``), each in its own process.

Usage: python benchmarks/run.py [ARGS...]

ARGS (``--quick``, ``--repeat N``, ``--check``, ...) are passed to every benchmark
unchanged.  A fresh interpreter per benchmark keeps one's allocations and warm caches
out of the next one's timings.  The exit code is the highest a benchmark returned, so
``--check`` fails the run when any benchmark misses its targets.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent


def discover(directory: Path = HERE) -> list[Path]:
    """The benchmark scripts, in name order."""
    return sorted(directory.glob("bench_*.py"))


def run(script: Path, args: Sequence[str]) -> int:
    command = [sys.executable, str(script), *args]
    print(f"== {script.name} ==", flush=True)
    return subprocess.run(command, check=False).returncode


def main(argv: Sequence[str]) -> int:
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        print("benchmarks:", ", ".join(script.name for script in discover()) or "none")
        return 0
    codes = [run(script, argv) for script in discover()]
    return max(codes, default=0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
