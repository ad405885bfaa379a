"""The command line every benchmark shares: ``--quick``, ``--repeat N`` and ``--check``,
the command that reproduces a run, the load average, and the exit code.

Standard library only, so that ``bench_parser.py`` stays free of network dependencies.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["command", "end", "load", "new_parser", "parse", "positive", "shown"]

CHECK_HELP = "exit 1 if a target is missed"


def positive(text: str) -> int:
    """An ``argparse`` type: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def new_parser(doc: str, *, quick: str, repeat: str, **options: Any) -> argparse.ArgumentParser:
    """A parser described by the first line of ``doc``, with ``--quick`` and ``--repeat``;
    a benchmark adds its own options, then calls :func:`parse`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0], **options)
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--repeat", type=positive, help=repeat)
    return parser


def parse(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    *,
    check: str = CHECK_HELP,
    **defaults: tuple[int, int],
) -> argparse.Namespace:
    """Add ``--check`` (always the last option) and parse ``argv``.  ``defaults`` maps an
    option left out to its value as (with ``--quick``, without)."""
    parser.add_argument("--check", action="store_true", help=check)
    args = parser.parse_args(argv)
    for name, (quick, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def command(script: str, args: argparse.Namespace, *options: str) -> list[str]:
    """The command line that reproduces this run of ``script`` (its ``__file__``), without
    the interpreter: ``--quick``, ``--repeat``, the benchmark's own ``options``, ``--check``."""
    argv = [str(Path(script).resolve()), *(["--quick"] if args.quick else [])]
    argv += ["--repeat", str(args.repeat), *options]
    return argv + (["--check"] if args.check else [])


def shown(argv: Sequence[str]) -> str:
    """``argv`` after this interpreter, quoted for a shell."""
    return shlex.join([sys.executable, *argv])


def load() -> str:
    """The 1-minute load average against the CPU count: others' work skews timings."""
    try:
        return f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    except OSError:
        return "unknown"


def end(args: argparse.Namespace, missed: bool) -> int:
    """Print the closing load average; the exit code (1 only with ``--check`` and a miss)."""
    print(f"load:     {load()} at the end")
    return 1 if args.check and missed else 0
