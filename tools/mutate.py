"""Mutation testing of one core module against its own tests, in minutes.

``mutmut run`` (configured in setup.cfg) runs each mutant against every test that
reaches the mutated function.  For the modules under the read loop that is most of the
suite: a mutant that survives re-runs hundreds of streaming tests, and one module takes
hours on two cores.  This runs mutmut on a copy of the tree (``.mutate/MODULE/``, kept
between runs, so later runs map only new tests) whose test selection is the module's own
test files.  mutmut tests again every mutant that the names on its command line match,
so each whole run takes as long as the first; ``--again`` then tests only the mutants
the last run did not kill and those of functions changed since.  A mutant it reports as
surviving may still be killed by another part of the suite: the score is a lower bound,
and a survivor is worth a test in the module's own files either way.

Usage (from the repository's root, with the ``test`` and ``mutation`` extras)::

    python tools/mutate.py _body              # its own tests, as listed below
    python tools/mutate.py _worker --tests tests/test_faults.py tests/test_client.py
    python tools/mutate.py _body --show       # and the edit of every survivor
    python tools/mutate.py _body --again      # after new tests or fixes: the rest only
    python tools/mutate.py _body --report     # the last run's scores again, running nothing

It runs mutmut under ``nice`` with one child process by default (``--max-children``),
and prints the mutmut summary, the survivors and ``killed / (total - skipped)``.

Equivalent mutants (no test can tell them from the code) are listed with the reason in
``tools/equivalent_mutants.txt``, each under its name and the fingerprint of its code
(``--show`` prints both).  The score is also given without them; an entry whose mutant
changed (its fingerprint no longer matches) or that a test now kills is reported, and
does not count, until someone judges it again.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Each core module's own test files: the tests written against it.
OWN_TESTS: dict[str, tuple[str, ...]] = {
    "_backoff": ("test_backoff.py",),
    "_body": ("test_body.py", "test_mutants_body.py"),
    "_parser": (
        "test_parser.py",
        "test_parser_properties.py",
        "test_parser_sseclient.py",
        "test_mutants_parser.py",
    ),
    "_sockread": ("test_sockread.py", "test_transport.py", "test_wait.py", "test_proxies.py"),
    "_stop": ("test_stop.py", "test_wait.py", "test_fork.py"),
    "_delivery": ("test_delivery.py", "test_lifecycle.py", "test_interrupts.py"),
    "_control": (
        "test_gevent.py",
        "test_mutants_control.py",
        "test_lifecycle.py",
        "test_collection.py",
        "test_fork.py",
        "test_comments.py",
        "test_interrupts.py",
    ),
    "_worker": ("test_mutants_worker.py", "test_client.py", "test_faults_status.py"),
    "_client": ("test_client.py", "test_mutants_client.py", "test_lifecycle.py"),
    "_oneshot": ("test_oneshot.py", "test_oneshot_options.py"),
    "_transport": (
        "test_transport.py",
        "test_mutants_transport.py",
        "test_proxies.py",
        "test_faults.py",
        "test_faults_status.py",
        "test_faults_hostile.py",
        "test_tunnel_post_handshake.py",
        "test_tunnel_waits.py",
        "test_header_wait.py",
        "test_connect_wait.py",
    ),
    "_connwait": ("test_connect_wait.py", "test_header_wait.py"),
    "_cli_state": ("test_cli_state.py", "test_state_file_round_trip.py"),
    "_tunnelread": (
        "test_tunnel_post_handshake.py",
        "test_tunnel_waits.py",
        "test_tunnel_detection.py",
    ),
    "_exceptions": ("test_error_descriptions.py", "test_error_defaults.py"),
    "_httputil": ("test_error_descriptions.py", "test_transport.py"),
}

EQUIVALENTS = ROOT / "tools" / "equivalent_mutants.txt"

_SELECTION_KEY = "pytest_add_cli_args_test_selection"
_KILLED = ("killed", "timeout", "segfault")


def main() -> int:
    args = _arguments()
    tests = args.tests or [f"tests/{name}" for name in OWN_TESTS[args.module]]
    missing = [test for test in tests if not (ROOT / test).exists()]
    if missing:
        sys.exit(f"no such test file: {', '.join(missing)}")
    scratch = ROOT / ".mutate" / args.module
    prefix = f"eventstream.{args.module}."
    if args.report:
        if not (scratch / "mutants").is_dir():
            sys.exit("--report needs a run first")
        _say_if_changed(scratch, args.module, tests)
    else:
        code = _run(args, scratch, prefix, tests)
        if code:
            return code
    statuses = _statuses(scratch, prefix)
    fingerprints = _fingerprints(scratch / "mutants" / "eventstream" / f"{args.module}.py")
    judged = _equivalents(EQUIVALENTS, prefix)
    survivors = sorted(name for name, status in statuses.items() if status == "survived")
    for name in survivors:
        mark = " (judged equivalent)" if judged.get(name) == fingerprints.get(name) else ""
        print(f"survived: {name} {fingerprints.get(name, '?')}{mark}")
        if args.show:
            subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=scratch, check=False)
    checked = {name: s for name, s in statuses.items() if s not in ("skipped", "not checked")}
    killed = sum(status in _KILLED for status in checked.values())
    unchecked = len(statuses) - len(checked)
    print(
        f"{args.module}: {killed} / {len(checked)} killed"
        f" ({100 * killed / max(len(checked), 1):.1f}%) against {len(tests)} test file(s);"
        f" {len(survivors)} survived, {unchecked} skipped or not checked"
    )
    equivalent = set()
    for name, fingerprint in sorted(judged.items()):
        if fingerprints.get(name) != fingerprint:
            print(f"stale entry (the mutant changed or is gone; judge it again): {name}")
        elif checked.get(name) in _KILLED:
            print(f"wrong entry (a test kills it, so it is not equivalent): {name}")
        else:
            equivalent.add(name)
    rest = len(checked) - len(equivalent & set(checked))
    print(
        f"{args.module}: {len(equivalent)} judged equivalent in {EQUIVALENTS.name};"
        f" {killed} / {rest} of the rest killed ({100 * killed / max(rest, 1):.1f}%)"
    )
    return 0


def _run(args: argparse.Namespace, scratch: Path, prefix: str, tests: list[str]) -> int:
    """Run mutmut on the module's mutants (all, or those ``--again`` picks); its status."""
    patterns = [f"{prefix}*"]
    if args.again:
        patterns = _again(scratch, args.module, prefix)
    _forget_map_if_changed(scratch, args.module)
    _mirror(scratch)
    _select_tests(scratch / "setup.cfg", tests)
    command = [sys.executable, "-m", "mutmut", "run", "--max-children", str(args.max_children)]
    if os.name == "posix":
        command = ["nice", "-n", "19", *command]
    run = subprocess.run([*command, *patterns], cwd=scratch, check=False) if patterns else None
    if run is not None and run.returncode not in (0, 1):  # mutmut exits 1 when mutants survive
        return run.returncode
    return 0


def _say_if_changed(scratch: Path, module: str, tests: list[str]) -> None:
    """For ``--report``: whether the results are of the module and tests as they are."""
    changed = [
        str(relative)
        for relative in (Path("eventstream") / f"{module}.py", *map(Path, tests))
        if (ROOT / relative).is_file()
        and (
            not (scratch / relative).is_file()
            or (scratch / relative).read_bytes() != (ROOT / relative).read_bytes()
        )
    ]
    if changed:
        print(f"changed since the last run (run --again): {', '.join(sorted(changed))}")
    else:
        print("the last run tested the module and the tests as they are now")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", choices=sorted(OWN_TESTS), help="a core module, e.g. _body")
    parser.add_argument("--tests", nargs="+", help="test files to use instead of its own")
    parser.add_argument("--max-children", type=int, default=1)
    parser.add_argument("--show", action="store_true", help="print each survivor's edit")
    parser.add_argument(
        "--again",
        action="store_true",
        help="after a whole run: test only its survivors, the mutants it did not check and"
        " those of functions changed since (mutmut tests every mutant a pattern names)",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="print the last run's results and scores again, running nothing",
    )
    return parser.parse_args()


def _mirror(scratch: Path) -> None:
    """Copy the tree's files (tracked, and new ones not ignored) into ``scratch``;
    files whose bytes did not change are left as they are."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for relative in filter(None, listed.split("\0")):
        source, target = ROOT / relative, scratch / relative
        if not source.is_file():
            continue  # deleted in the working tree
        if target.is_file() and target.read_bytes() == source.read_bytes():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)  # a new mtime: mutmut regenerates what changed


def _forget_map_if_changed(scratch: Path, module: str) -> None:
    """mutmut maps tests to the functions they reach once, and then maps only new
    tests: a function added or changed since would be tried against new tests only,
    and its mutants could survive tests that kill them.  So when the module changed
    since the last run, the whole map is made again (the results are kept)."""
    relative = Path("eventstream") / f"{module}.py"
    kept = scratch / relative
    if kept.is_file() and kept.read_bytes() == (ROOT / relative).read_bytes():
        return
    (scratch / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)


def _again(scratch: Path, module: str, prefix: str) -> list[str]:
    """The mutants worth testing again: those not killed in the last run (by name),
    and every mutant of a function whose code changed since (by pattern)."""
    if not (scratch / "mutants").is_dir():
        sys.exit("--again needs a whole run first")
    names = [name for name, s in _statuses(scratch, prefix).items() if s not in _KILLED]
    before = scratch / "eventstream" / f"{module}.py"
    after = ROOT / "eventstream" / f"{module}.py"
    old, new = _functions(before), _functions(after)
    changed = [name for name, code in new.items() if old.get(name) != code]
    return names + [f"{prefix}{name}__mutmut_*" for name in changed]


def _functions(path: Path) -> dict[str, str]:
    """Each function's code in a module, by mutmut's name for it (``x_f``, ``xǁCǁm``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found[f"x_{node.name}"] = ast.dump(node)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    found[f"x\u01c1{node.name}\u01c1{item.name}"] = ast.dump(item)
    return found


def _fingerprints(mutated: Path) -> dict[str, str]:
    """Each mutant's fingerprint: a hash of its function's code as mutmut wrote it
    (the name aside), which changes when the mutation or the function changes."""
    if not mutated.is_file():
        return {}
    module = ".".join(mutated.with_suffix("").parts[-2:])
    found = {}
    for node in ast.walk(ast.parse(mutated.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and "__mutmut_" in node.name:
            name, node.name = node.name, "_"
            found[f"{module}.{name}"] = hashlib.sha256(ast.dump(node).encode()).hexdigest()[:12]
    return found


def _equivalents(path: Path, prefix: str) -> dict[str, str]:
    """The judged-equivalent mutants of one module: name to fingerprint.

    Each entry is a line ``NAME FINGERPRINT`` followed by indented lines that say why
    no test can tell the mutant from the code; an entry without a reason is refused."""
    if not path.is_file():
        return {}
    entries: dict[str, str] = {}
    reasons: dict[str, str] = {}
    current = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if line[0].isspace():
            if current is None:
                sys.exit(f"{path.name}:{number}: a reason without a mutant above it")
            reasons[current] = f"{reasons[current]} {line.strip()}"
            continue
        fields = line.split()
        if len(fields) != 2:
            sys.exit(f"{path.name}:{number}: expected NAME FINGERPRINT, got {line!r}")
        if fields[0] in entries:  # a union merge may bring back an entry judged again
            sys.exit(f"{path.name}:{number}: {fields[0]} is listed twice")
        current, entries[fields[0]], reasons[fields[0]] = fields[0], fields[1], ""
    unexplained = [name for name, reason in reasons.items() if not reason]
    if unexplained:
        sys.exit(f"{path.name}: no reason given for {', '.join(unexplained)}")
    return {name: value for name, value in entries.items() if name.startswith(prefix)}


def _select_tests(setup_cfg: Path, tests: list[str]) -> None:
    """Point mutmut's test selection in the copy's setup.cfg at ``tests``."""
    lines = setup_cfg.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(_SELECTION_KEY))
    end = start + 1
    while end < len(lines) and lines[end].startswith((" ", "\t")):
        end += 1
    lines[start:end] = [f"{_SELECTION_KEY} =", *(f"    {test}" for test in tests)]
    setup_cfg.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _statuses(scratch: Path, prefix: str) -> dict[str, str]:
    """Each of the module's mutants and its status, from ``mutmut results --all true``."""
    out = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        cwd=scratch,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    statuses = {}
    for line in out.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name.startswith(prefix):
            statuses[name] = status.strip()
    return statuses


if __name__ == "__main__":
    sys.exit(main())
