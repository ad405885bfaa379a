"""The ``--state`` file as a cron job relies on it: what it holds, what survives a kill.

The saved ID reads back exactly, in any locale; a hand-written file without its
final newline is accepted; a kill in the middle of a save leaves the old ID and a
hidden temporary file beside it; an unchanged ID is not written again; every failure
is a ``StateError`` naming the file.  (A failed save's clean-up, the fsyncs and a
one-shot run's empty ID are pinned in ``test_cli_state.py``.)
"""

from __future__ import annotations

import locale
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from eventstream._cli_state import Resume, StateError, StateFile

ROOT = Path(__file__).resolve().parent.parent
IDS = ["1", "", "XYZ", "a b\tc ", "évènement-✓", "x" * 1000]


def run_python(code: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # In the tree under test (cwd first on sys.path), with this process's environment.
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        encoding="utf-8",
        timeout=60,
        check=False,
        cwd=ROOT,
        env={**os.environ, **env},
    )


@pytest.mark.parametrize("event_id", IDS)
def test_a_saved_id_reads_back_exactly(tmp_path: Path, event_id: str) -> None:
    path = tmp_path / "feed.id"
    StateFile(str(path)).save(event_id)
    assert path.read_bytes() == event_id.encode("utf-8") + b"\n"
    assert StateFile(str(path)).load() == event_id


def test_a_missing_file_is_no_resume_point(tmp_path: Path) -> None:
    assert StateFile(str(tmp_path / "feed.id")).load() is None


@pytest.mark.parametrize(("content", "expected"), [(b"42", "42"), (b"42\n", "42"), (b"\n", "")])
def test_a_hand_written_file_may_omit_the_final_newline(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    path = tmp_path / "feed.id"
    path.write_bytes(content)
    assert StateFile(str(path)).load() == expected


@pytest.mark.parametrize("content", [b"1\n2\n", b"1\r2\n", b"a\0b\n", b"\n\n"])
def test_a_file_that_is_not_one_id_is_refused_by_name(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "feed.id"
    path.write_bytes(content)
    with pytest.raises(StateError, match=rf"^the state file {path} does not hold one event ID$"):
        StateFile(str(path)).load()


@pytest.mark.parametrize("content", [b"\xff\xfe\n", None], ids=["not-utf-8", "a-directory"])
def test_an_unreadable_file_is_a_state_error_naming_it(
    tmp_path: Path, content: bytes | None
) -> None:
    path = tmp_path / "feed.id"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(StateError, match=rf"^cannot read the state file {path}: \S"):
        StateFile(str(path)).load()


def test_the_file_is_utf_8_whatever_the_locale(tmp_path: Path) -> None:
    # A cron job often runs in the C locale, where Python's default file encoding is
    # ASCII: an ID with non-ASCII characters must still be saved and read back.
    path = tmp_path / "feed.id"
    StateFile(str(path)).save("é-1")
    code = (
        "import sys; from eventstream._cli_state import StateFile\n"
        "f = StateFile(sys.argv[1]); old = f.load(); f.save(old + '-\\u2713')\n"
        "print(ascii(f.load()))"
    )
    ran = run_python(code, str(path), LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == ascii("é-1-✓")
    assert StateFile(str(path)).load() == "é-1-✓"


def test_the_file_is_utf_8_in_this_process_under_the_c_locale(tmp_path: Path) -> None:
    # The same, in this process: where Python is not in UTF-8 mode, switching the
    # C library's locale makes ASCII the default encoding of files opened from here.
    path = tmp_path / "feed.id"
    previous = locale.setlocale(locale.LC_CTYPE)
    try:
        locale.setlocale(locale.LC_CTYPE, "C")
        StateFile(str(path)).save("é-2")
        loaded = StateFile(str(path)).load()
    finally:
        locale.setlocale(locale.LC_CTYPE, previous)
    assert loaded == "é-2"
    assert path.read_bytes() == "é-2\n".encode()


def test_a_kill_during_a_save_leaves_the_old_id_and_a_hidden_temporary(tmp_path: Path) -> None:
    # kill -9 (or a power cut) after the new ID is written, before the rename: the
    # state file still holds the old ID, whole; what is left beside it is a hidden
    # file named after it, ending in .tmp, holding the new ID.
    path = tmp_path / "feed.id"
    StateFile(str(path)).save("1")
    code = (
        "import os, sys; from eventstream._cli_state import StateFile\n"
        "os.replace = lambda src, dst: os._exit(9)\n"
        "StateFile(sys.argv[1]).save('2')"
    )
    ran = run_python(code, str(path))
    assert ran.returncode == 9, ran.stderr
    assert StateFile(str(path)).load() == "1"
    (left,) = (p for p in tmp_path.iterdir() if p != path)
    assert left.name.startswith(".feed.id.")
    assert left.name.endswith(".tmp")
    assert left.read_text(encoding="utf-8") == "2\n"
    StateFile(str(path)).save("3")  # the next run is not disturbed by it
    assert StateFile(str(path)).load() == "3"


def test_a_failed_save_whose_clean_up_fails_too_is_a_state_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # E.g. the file system turned read-only under the save: the caller gets the one
    # documented error, with the file's name, not whatever the clean-up raised.
    path = tmp_path / "feed.id"

    def refuse(*args: object) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "replace", refuse)
    monkeypatch.setattr(os, "unlink", refuse)
    with pytest.raises(StateError, match=rf"^cannot write the state file {path}: .*Read-only"):
        StateFile(str(path)).save("1")


def test_a_save_into_a_missing_directory_is_a_state_error_naming_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gone" / "feed.id"
    with pytest.raises(StateError, match=rf"^cannot write the state file {path}: \S"):
        StateFile(str(path)).save("1")


def test_a_directory_that_cannot_be_fsynced_does_not_fail_the_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Some platforms cannot open a directory, some file systems refuse to fsync one:
    # the rename is still atomic, so the save succeeds, and the debug log says why.
    path = tmp_path / "feed.id"
    real_open, real_fsync = os.open, os.fsync

    def no_directory_open(name: object, flags: int, *args: int) -> int:
        if Path(str(name)) == tmp_path:
            raise PermissionError(13, "Permission denied")
        return real_open(name, flags, *args)  # type: ignore[arg-type]

    def no_directory_fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(22, "Invalid argument")
        real_fsync(fd)

    caplog.set_level(logging.DEBUG, logger="eventstream._cli_state")
    monkeypatch.setattr(os, "open", no_directory_open)
    StateFile(str(path)).save("1")
    monkeypatch.setattr(os, "open", real_open)
    monkeypatch.setattr(os, "fsync", no_directory_fsync)
    StateFile(str(path)).save("2")
    monkeypatch.undo()
    assert StateFile(str(path)).load() == "2"
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot open {tmp_path} to fsync it: PermissionError(13, 'Permission denied')",
        f"fsync of {tmp_path} failed: OSError(22, 'Invalid argument')",
    ]
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("fresh_parser", [False, True])
def test_an_unchanged_id_is_not_written_again(tmp_path: Path, fresh_parser: bool) -> None:
    # Each save is a new file, two fsyncs and a rename: events that do not move the
    # resume point (no id: field, or the same one) must not cost a write each.
    path, pin = tmp_path / "feed.id", tmp_path / "pin"
    state = StateFile(str(path))
    state.save("5")
    resume = Resume(state, "5", fresh_parser=fresh_parser)
    os.link(path, pin)  # a second name for the file as it is now
    for _ in range(3):
        resume.delivered("5")
    assert path.samefile(pin)  # not replaced
    resume.delivered("6")
    assert not path.samefile(pin)
    assert state.load() == "6"
    pin.unlink()
    os.link(path, pin)
    for _ in range(3):
        resume.delivered("6")
    assert path.samefile(pin)
