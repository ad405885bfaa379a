"""Third-party servers and proxies as subprocesses on 127.0.0.1, for the integration tests.

Each runs in its own process group, with its output in a log file; a fixture starts
it, waits until it is ready (a line in its log or its port file, in a loop bounded
by a deadline that waits on the process itself, so an early exit is reported at
once with its log), and kills and reaps the whole group when done.  Servers get a
listening socket bound here (port 0) and inherited as a file descriptor, so their
port is known before they start and no port can be taken meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import trustme

APPS = Path(__file__).parent / "integration_apps"
START_TIMEOUT = 30.0  # seconds a server may take to start on a loaded CI machine


class Process:
    """A server process: started by ``with``, killed with its group and reaped after."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log: Path,
        ready: Callable[[], bool],
        *,
        listener: socket.socket | None = None,
    ) -> None:
        self.name, self.argv, self.log, self.ready = name, list(argv), log, ready
        self.listener = listener
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Process:
        fds = () if self.listener is None else (self.listener.fileno(),)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=fds,
                start_new_session=True,  # one group: workers die with it
                cwd=APPS,
            )
        if self.listener is not None:
            self.listener.close()  # the server has its own copy now
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while not self.ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready in {START_TIMEOUT} s: {self.tail()}")
            try:
                code = self.proc.wait(timeout=0.02)  # the bounded wait between checks
            except subprocess.TimeoutExpired:
                continue
            raise RuntimeError(f"{self.name} exited with {code}: {self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):  # the group is gone already
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def listener() -> socket.socket:
    sock = socket.create_server(("127.0.0.1", 0))
    sock.set_inheritable(True)
    return sock


def log_says(log: Path, text: str) -> Callable[[], bool]:
    return lambda: log.exists() and text in log.read_text(errors="replace")


class Pki:
    """A trustme authority and files for a server certificate on 127.0.0.1."""

    def __init__(self, folder: Path) -> None:
        self.ca = trustme.CA()
        self.bundle = folder / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.bundle))
        leaf = self.ca.issue_cert("127.0.0.1", "localhost")
        self.cert, self.key = folder / "cert.pem", folder / "key.pem"
        leaf.private_key_pem.write_to_path(str(self.key))
        self.cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))


def uvicorn(folder: Path, http: str, pki: Pki | None) -> tuple[Process, str]:
    """uvicorn serving ``sse_starlette_app`` with ``--http`` h11 or httptools."""
    sock = listener()
    port = sock.getsockname()[1]
    argv = [sys.executable, "-m", "uvicorn", "sse_starlette_app:app", "--fd", str(sock.fileno())]
    argv += ["--http", http, "--no-access-log", "--log-level", "info", "--lifespan", "off"]
    if pki is not None:
        argv += ["--ssl-certfile", str(pki.cert), "--ssl-keyfile", str(pki.key)]
    name = f"uvicorn-{http}{'-tls' if pki else ''}"
    log = folder / f"{name}.log"
    scheme = "https" if pki else "http"
    ready = log_says(log, "Uvicorn running")
    return Process(name, argv, log, ready, listener=sock), f"{scheme}://127.0.0.1:{port}"


def tornado(folder: Path) -> tuple[Process, str]:
    """Tornado serving ``tornado_app`` with gzip on."""
    sock = listener()
    port = sock.getsockname()[1]
    argv = [sys.executable, "tornado_app.py", str(sock.fileno())]
    log = folder / "tornado.log"
    ready = log_says(log, "ready")
    return Process("tornado", argv, log, ready, listener=sock), f"http://127.0.0.1:{port}"


def proxy_py(folder: Path, pki: Pki | None) -> tuple[Process, Callable[[], str]]:
    """proxy.py as an ``http://`` proxy, or an ``https://`` one with ``pki``'s certificate.

    It binds port 0 itself and writes the port to a file; returns a function that
    gives the proxy's URL once it is ready.
    """
    name = f"proxy.py-{'https' if pki else 'http'}"
    port_file = folder / f"{name}.port"
    argv = [sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", "0"]
    argv += ["--port-file", str(port_file), "--num-acceptors", "1", "--num-workers", "1"]
    argv += ["--timeout", "300", "--log-level", "WARNING"]
    if pki is not None:
        argv += ["--cert-file", str(pki.cert), "--key-file", str(pki.key)]

    def ready() -> bool:
        return port_file.exists() and port_file.read_text().strip() != ""

    def url() -> str:
        port = int(port_file.read_text().split()[0])
        return f"{'https' if pki else 'http'}://127.0.0.1:{port}"

    return Process(name, argv, folder / f"{name}.log", ready), url
