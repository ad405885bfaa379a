"""Processes that fork: what a stream that exists at a fork becomes in the child.

Rule: a child never inherits a live stream.  After a fork, the child sees every
stream as stopped, holds none of the parent's stream sockets (their descriptors are
closed in the child: ``close``, never ``shutdown``, so the parent's connection is
untouched), and ``start()`` there opens the child's own connection.  Three things
make that hold for real servers (docs/architecture.rst, "Processes that fork"):

* Every socket a worker thread creates (its connections, TLS sockets, wake-up
  pairs; threads marked by :func:`worker_thread`) is recorded the moment it is
  created, by an audit hook on ``socket.__new__``: a fork may come while the worker
  connects or waits for headers, and a descriptor copied before ``connect()`` is
  connected too once the parent connects it.  The record is a weak reference.  In
  the parent only the fork hook reads it, and only a socket's number and family:
  ``socket()`` runs without the GIL, so a fork could copy a descriptor its object
  does not hold yet, and a fork waits for such a socket to be made (microseconds; at
  most ``SETTLE_LIMIT``).  In a child, where the worker that owned the socket does
  not exist, the descriptor is detached from the orphaned object and closed (so the
  object can never close a reused number later).  A socket type that takes no weak
  reference is recorded by number and inode when it connects, and closed only if the
  inode still matches.
* A lock held by a worker thread at the fork stays held in the child forever, the
  import locks included: :func:`prepare` imports, on the caller's thread, before the
  first worker starts, everything the connect and read path would import lazily.
  The one lazy import left (a charset codec named by the server) runs under
  :func:`guarded_import`, which a fork waits for.
* uWSGI forks in C, so ``os.register_at_fork`` hooks never run there, and a Python
  thread running in its master when it forks leaves the workers waiting for the GIL.
  :func:`uwsgi_defer` runs a start asked for in the master in every worker instead,
  right after uWSGI forks it; :func:`check` notices any other fork the hooks missed
  by the process id, on the stream's next use.

Standard library only.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Protocol

__all__ = [
    "LAZY_IMPORTS",
    "check",
    "forget_descriptor",
    "forget_thread",
    "guarded_import",
    "on_child",
    "on_patched",
    "prepare",
    "record_descriptor",
    "uwsgi_defer",
    "worker_thread",
]

_log = logging.getLogger(__name__)

#: Modules the connect/read path imports on first use (measured with an audit hook
#: over connect, redirect, TLS, IDNA hosts, errors and reconnects: requests'
#: ``get_netrc_auth`` imports ``netrc`` and ``shlex``; ``posixpath.expanduser`` may
#: import ``pwd``; IDNA hosts need the ``idna`` and ``punycode`` codecs), plus what
#: ``requests``, ``urllib3`` and ``_body`` import at the top, in case a future version
#: makes it lazy.  A test pins that a worker thread imports nothing.
LAZY_IMPORTS = (
    "netrc",
    "shlex",
    "pwd",
    "encodings.idna",
    "encodings.punycode",
    "encodings.latin_1",
    "encodings.ascii",
    "http.cookiejar",
    "ssl",
    "zlib",
    "email.parser",
    "urllib.request",
)

_pid = os.getpid()
_prepared = False
# Plain dict operations are atomic under the GIL, so no lock guards these: a lock held
# by a worker at the fork would be held forever in the child.
_created: dict[int, weakref.ref[Any]] = {}  # id(ref) -> a worker's socket
# A socket that takes no weak reference, or an eventfd: by number (see _record_number).
_by_number: dict[int, tuple[int, int, int]] = {}  # fd -> (st_dev, st_ino, worker ident)
_numbers_of: dict[int, list[int]] = {}  # worker ident -> its fds in _by_number
_child_handlers: list[Callable[[], None]] = []
_patch_handlers: list[Callable[[], bool]] = []
_lock_type: object = threading.Lock  # what made the streams' locks (see check)
_import_lock = threading.Lock()
_deferred: list[Callable[[], None]] = []
_local = threading.local()  # .worker is True on eventstream worker threads
_SOCKET_EVENTS = frozenset(("socket.__new__", "socket.connect"))


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


def prepare() -> None:
    """Before the first worker starts, on the caller's thread, once: import what the
    read path would import lazily, and install the hook that records connections."""
    global _prepared
    if _prepared:
        return
    if hasattr(os, "fork"):
        sys.addaudithook(_audit)
    for name in LAZY_IMPORTS:
        try:
            importlib.import_module(name)
        except ImportError:  # pwd on Windows, ssl on a Python built without it
            _log.debug("cannot import %s ahead of the workers", name)
    _prepared = True


@contextlib.contextmanager
def guarded_import() -> Iterator[None]:
    """Around a first-time import a worker cannot avoid: a fork waits until it ends."""
    with _import_lock:
        yield


def worker_thread() -> None:
    """Mark the current thread as a worker: the sockets it creates are recorded."""
    _local.worker = True


def _audit(event: str, args: tuple[Any, ...]) -> None:
    # Runs for every audit event of the process, on every thread: keep it cheap.
    if event in _SOCKET_EVENTS and getattr(_local, "worker", False):
        _record(args[0], connecting=event == "socket.connect")


def _record(sock: Any, *, connecting: bool) -> None:
    try:
        ref = weakref.ref(sock, _dropped)
    except TypeError:
        if connecting:  # only now has it a descriptor
            _record_number(sock)
        return
    _created[id(ref)] = ref


def _dropped(ref: weakref.ref[Any]) -> None:
    _created.pop(id(ref), None)


def _record_number(sock: _HasFileno) -> None:
    try:
        fd = sock.fileno()
        stat = os.fstat(fd)
    except (OSError, ValueError) as exc:
        _log.debug("cannot record a socket for the fork hook: %r", exc)
        return
    # Indexed both ways, so that forgetting costs the same with 10 or 10 000 streams.
    # A number is recorded once at a time: a later record of it is a reuse.
    me = threading.get_ident()
    _by_number[fd] = (stat.st_dev, stat.st_ino, me)
    _numbers_of.setdefault(me, []).append(fd)


def record_descriptor(owner: _HasFileno) -> None:
    """On a worker thread: a child closes ``owner``'s descriptor (a waker that is no
    socket, an eventfd), recorded by number and inode like a socket without weak
    references.  Call :func:`forget_descriptor` before closing it."""
    _record_number(owner)


def forget_descriptor(fd: int) -> None:
    """The worker is about to close ``fd``: a child must not close the number later
    (an eventfd shares its inode with every other anonymous-inode descriptor)."""
    recorded = _by_number.pop(fd, None)
    if recorded is not None:
        with contextlib.suppress(ValueError):  # its thread forgot it meanwhile
            _numbers_of.get(recorded[2], []).remove(fd)


def forget_thread() -> None:
    """The current worker thread closed its session: forget the sockets recorded by
    number (those recorded by weak reference go when they are collected)."""
    me = threading.get_ident()
    for fd in _numbers_of.pop(me, []):
        recorded = _by_number.get(fd)
        if recorded is not None and recorded[2] == me:
            _by_number.pop(fd, None)


def on_child(handler: Callable[[], None]) -> None:
    """Run ``handler`` in every child, after its inherited stream sockets are closed."""
    _child_handlers.append(handler)


def on_patched(handler: Callable[[], bool]) -> None:
    """Run ``handler`` once ``threading`` is found monkey-patched (see :func:`check`);
    it returns False if a worker was running then."""
    _patch_handlers.append(handler)


def check() -> None:
    """On a stream's use, before it takes any of its locks: a fork that ran no Python
    hook (uWSGI) is handled now, and so is a monkey-patch of ``threading`` since the
    streams' locks were made.

    gevent and eventlet replace ``threading``'s locks with ones that let another
    greenlet of the same thread run while one waits.  Under gunicorn's gevent worker
    with ``--preload`` the app, and its streams, are made in the master, before the
    worker patches: their locks are native ones, and a greenlet that waits holding
    one (``start()`` waits for the new worker to begin) blocks every greenlet of the
    process as soon as a second one asks for it.  So they are made again here.
    """
    if os.getpid() != _pid:
        _after_fork_in_child()
    if threading.Lock is not _lock_type:
        _after_patch()


def _after_patch() -> None:
    global _lock_type, _local
    _lock_type = threading.Lock
    quiet = True
    for handler in _patch_handlers:  # every one runs
        quiet = handler() and quiet
    if quiet:
        # No worker runs: the marks become per greenlet (a running worker would
        # lose its mark, and a child would then keep its later sockets).
        _local = threading.local()


def _close_inherited() -> int:
    """In a child: close every descriptor of a worker's socket, never shutdown()."""
    closed = 0
    for ref in list(_created.values()):
        sock = ref()
        if sock is None:
            continue  # collected (on 3.9/3.10 the dead threads' frames are freed)
        try:
            fd = sock.detach()  # the orphaned object forgets the number...
            if fd >= 0:
                os.close(fd)  # ...and the parent's connection goes on
                closed += 1
        except (OSError, ValueError, AttributeError) as exc:
            _log.debug("cannot close an inherited socket: %r", exc)
    for fd, (dev, ino, _) in list(_by_number.items()):
        try:
            stat = os.fstat(fd)
            if (stat.st_dev, stat.st_ino) == (dev, ino):
                os.close(fd)
                closed += 1
        except OSError:
            continue  # closed already
    _created.clear()
    _by_number.clear()
    _numbers_of.clear()
    return closed


#: Bound on how long a fork waits for a worker inside ``socket()`` (see below).
SETTLE_LIMIT = 0.2


def _before_fork() -> None:
    _import_lock.acquire()
    _settle_new_sockets()


def _settle_new_sockets() -> None:
    # socket() runs without the GIL: a fork just after it returns copies a descriptor
    # that the object does not hold yet, which the child could not name, and which
    # the parent then connects.  That moment lasts microseconds; let it pass.
    deadline = time.monotonic() + SETTLE_LIMIT
    pause = threading.Event()
    while any(_being_created(ref()) for ref in list(_created.values())):
        if time.monotonic() >= deadline:
            _log.debug("forking while a stream's socket is still being created")
            return
        pause.wait(0.001)  # releases the GIL: the worker finishes socket.__init__


def _being_created(sock: Any) -> bool:
    # Before socket() returns, an object has neither a descriptor nor a family; a
    # closed or detached one keeps its family.
    try:
        return sock is not None and sock.fileno() == -1 and int(sock.family) == 0
    except (OSError, ValueError, AttributeError):
        return False


def _after_fork_in_parent() -> None:
    _import_lock.release()


def _after_fork_in_child() -> None:
    global _pid, _import_lock
    _pid = os.getpid()
    _import_lock = threading.Lock()
    _deferred.clear()
    closed = _close_inherited()
    for handler in _child_handlers:
        handler()
    if closed:
        _log.debug("closed %d inherited stream descriptors after a fork", closed)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )


def uwsgi_defer(start: Callable[[], None]) -> bool:
    """In a uWSGI process that will fork its workers, queue ``start`` to run in each
    worker after the fork and return True; elsewhere return False.

    Raises ``RuntimeError`` (saying what to do) when this uWSGI runs no Python
    threads, where a stream could never make progress.
    """
    uwsgi: Any = sys.modules.get("uwsgi")
    if uwsgi is None or not hasattr(uwsgi, "worker_id"):
        return False
    if not getattr(uwsgi, "has_threads", True):
        raise RuntimeError(
            "uWSGI runs without Python threads, so a stream cannot run: start uWSGI"
            " with --enable-threads (or --threads N)"
        )
    in_master = uwsgi.worker_id() == 0 and _call(uwsgi, "mule_id") == 0
    if not in_master:
        return False
    if not _deferred:
        _install_postfork(uwsgi)
    _deferred.append(start)
    _log.info("in the uWSGI master: the stream will start in each worker after the fork")
    return True


def _call(module: Any, name: str) -> Any:
    function = getattr(module, name, None)
    return 0 if function is None else function()


def _install_postfork(uwsgi: Any) -> None:
    # uwsgidecorators keeps a chain of hooks (and replaces uwsgi.post_fork_hook when
    # imported); it refuses to load without --master, where we chain by hand.
    try:
        decorators: Any = importlib.import_module("uwsgidecorators")
    except Exception:  # it raises a bare Exception without --master
        previous = getattr(uwsgi, "post_fork_hook", None)

        def chained() -> None:
            if previous is not None:
                previous()
            _run_deferred()

        uwsgi.post_fork_hook = chained
    else:
        decorators.postfork(_run_deferred)


def _run_deferred() -> None:
    # In a uWSGI worker, just forked: the hooks of os.register_at_fork did not run.
    starts = list(_deferred)
    check()
    for start in starts:
        try:
            start()
        except Exception:
            _log.exception("a stream deferred to the uWSGI workers failed to start")
