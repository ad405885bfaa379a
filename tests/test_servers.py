"""README's recipes under the real servers: gunicorn (sync, gthread, gevent, with and
without ``--preload``), uWSGI (with and without ``--enable-threads`` and
``--lazy-apps``) and waitress, each serving ``examples/prefork_app.py`` with its
stream started at import and, separately, on each process's first request.

Every start checks: every worker answers within 2 s and receives events, no stream
connection is held by two processes (an inherited socket), each worker holds its own,
the master streams only where it started a stream itself (gunicorn ``--preload``
with a start at import; never uWSGI's master), and everything exits within 5 s of
SIGTERM.  A start where a stream already runs when the server forks (the fork race)
is repeated ``FORK_RACE_STARTS`` times, the others ``OTHER_STARTS`` times.

Needs the ``servers`` extra (``pip install -e '.[test,servers]'``); skipped without
it.  With ``EVENTSTREAM_SERVERS_REPORT=FILE`` each case appends a JSON line there.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _prefork import ANSWER_LIMIT, EXIT_LIMIT, RECIPES, Start, run_once

from eventstream.testing import Script, SSEServer

FORK_RACE_STARTS = int(os.environ.get("EVENTSTREAM_FORK_RACE_STARTS", "20"))
OTHER_STARTS = int(os.environ.get("EVENTSTREAM_OTHER_STARTS", "2"))
HAS_PROC = Path("/proc/net/tcp").exists()

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="pre-forking servers need fork")


def _installed(recipe: str) -> bool:
    executable = RECIPES[recipe].split()[0]
    if shutil.which(executable, path=str(Path(sys.executable).parent)) is None:
        return False
    if "gevent" in recipe:
        try:
            import gevent  # noqa: F401 (only to know it is there)
        except ImportError:
            return False
    return True


def _races(recipe: str, start: str) -> bool:
    """A stream runs in the master when it forks (gunicorn --preload, uWSGI's master)."""
    uwsgi_master = recipe.startswith("uwsgi") and "lazy" not in recipe
    return start == "import" and ("preload" in recipe or uwsgi_master)


@pytest.fixture(scope="module")
def feed() -> Iterator[str]:
    with SSEServer() as server:
        server.default = Script().event("tick", id="1").hold()
        yield server.url + "/events"


@pytest.mark.parametrize("start", ["import", "request"])
@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_every_worker_streams_alone_and_exits_on_sigterm(
    recipe: str, start: str, feed: str
) -> None:
    if not _installed(recipe):
        pytest.skip(f"{recipe}: install the servers extra")
    starts = FORK_RACE_STARTS if _races(recipe, start) else OTHER_STARTS
    runs = [run_once(recipe, feed, start) for _ in range(starts)]
    _report(recipe, start, runs)
    master_streams = 1 if ("preload" in recipe and start == "import") else 0
    for number, run in enumerate(runs, 1):
        where = f"{recipe}, start at {start}, start {number}/{starts}"
        log = "\n".join(run.log[-40:])
        assert not run.hung, f"{where}: workers {run.hung} never had events\n{log}"
        assert not run.slow, f"{where}: answers over {ANSWER_LIMIT} s: {run.slow}\n{log}"
        assert run.exit_seconds < EXIT_LIMIT, f"{where}: still running {EXIT_LIMIT} s after TERM"
        if HAS_PROC:
            assert not run.inherited, f"{where}: inherited stream sockets {run.inherited}"
            workers = list(run.answered)
            assert all(run.streams[pid] >= 1 for pid in workers), f"{where}: {run.streams}"
            masters = [n for pid, n in run.streams.items() if pid not in workers]
            assert all(n == master_streams for n in masters), f"{where}: {run.streams}"


def _report(recipe: str, start: str, runs: list[Start]) -> None:
    path = os.environ.get("EVENTSTREAM_SERVERS_REPORT")
    if not path:
        return
    exits = [run.exit_seconds for run in runs]
    line = {
        "python": ".".join(map(str, sys.version_info[:2])),
        "recipe": recipe,
        "start": start,
        "starts": len(runs),
        "hangs": sum(bool(run.hung) for run in runs),
        "slow_answers": sum(len(run.slow) for run in runs),
        "inherited": sum(len(run.inherited) for run in runs) if HAS_PROC else None,
        "exit_max_s": round(max(exits), 2),
        "exit_mean_s": round(sum(exits) / len(exits), 2),
    }
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")
