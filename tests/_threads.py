"""Deterministic waits on another thread's progress, for tests of blocking code.

``wait_until_inside`` looks at the thread's current stack (``sys._current_frames``):
it returns once the thread is running (or blocked in) a given function, so a test
acts at exactly the moment it means to, instead of after a lucky delay.
"""

from __future__ import annotations

import sys
import threading
import time
import types


def inside(thread: threading.Thread, code: types.CodeType) -> bool:
    """Whether ``code`` is on ``thread``'s stack right now."""
    frame: types.FrameType | None = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if frame.f_code is code:
            return True
        frame = frame.f_back
    return False


def wait_until_inside(thread: threading.Thread, code: types.CodeType, timeout: float) -> bool:
    """Wait (bounded) until ``code`` is on ``thread``'s stack; False if it never was
    or the thread ended first."""
    deadline = time.monotonic() + timeout
    tick = threading.Event()  # never set: wait() paces the polling
    while time.monotonic() < deadline and thread.is_alive():
        if inside(thread, code):
            return True
        tick.wait(0.001)
    return False
