"""The docs cannot rot: README's commands are CI's, and the examples run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from _prefork import RECIPES

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.rst").read_text(encoding="utf-8")
    # The literal blocks right after the opening paragraphs: set-up, then tests.
    return re.findall(r"::\n\n    (.+)\n", text)[:2]


def test_readme_opens_with_the_setup_and_test_commands() -> None:
    setup, tests = _readme_commands()
    assert "pip install ." in setup
    assert "eventstream --demo" in setup
    assert "pytest" in tests


def test_ci_runs_exactly_the_readme_test_command() -> None:
    _, tests = _readme_commands()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    for part in tests.split(" && "):
        assert part in ci, f"README's {part!r} is not a line of .ci/run"


def test_quickstart_example_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "hello from the built-in server" in result.stdout
    assert "Last-Event-ID 3" in result.stdout


def test_readme_lists_exactly_the_server_recipes_the_server_tests_run() -> None:
    text = (ROOT / "README.rst").read_text(encoding="utf-8")
    section = text.split("\nPre-forking servers\n", 1)[1].split("\n\n\n", 1)[0]
    listed = re.findall(r"^    ((?:gunicorn|uwsgi|waitress-serve) .+)$", section, re.MULTILINE)
    assert listed == list(RECIPES.values())
