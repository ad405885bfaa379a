"""The ``--state`` file: complete, durable, never a torn write, never a lost resume point."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from eventstream._cli_state import Resume, StateError, StateFile


def test_a_failed_save_leaves_no_temporary_file_and_the_old_id(tmp_path: Path) -> None:
    # The rename fails (a directory is in the way): the temporary file must go.
    target = tmp_path / "state"
    target.mkdir()
    (target / "keep").write_text("x")
    with pytest.raises(StateError, match=r"cannot write the state file .*state"):
        StateFile(str(target)).save("7")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]


def test_a_save_interrupted_by_ctrl_c_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = StateFile(str(tmp_path / "id"))
    state.save("1")

    def interrupted(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        state.save("2")
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["id"]
    assert state.load() == "1"


def test_a_save_is_flushed_to_disk_before_the_rename_and_the_rename_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Durability cannot be seen without a power cut; the order of the system calls
    # is what makes it: the new file's data on disk, then the rename, then the
    # directory entry on disk.  Otherwise a crash can leave an empty or old file.
    steps: list[tuple[str, int]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        steps.append(("fsync", os.fstat(fd).st_ino))
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        steps.append(("replace", os.stat(src).st_ino))
        # In the same directory (a rename is atomic within one file system), hidden
        # and named after the state file, so a glob over the directory skips it.
        temporary = Path(src)
        assert temporary.parent == tmp_path
        assert temporary.name.startswith(".id.")
        assert temporary.name.endswith(".tmp")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    path = tmp_path / "id"
    StateFile(str(path)).save("42")
    monkeypatch.undo()
    new_file, directory = path.stat().st_ino, tmp_path.stat().st_ino
    assert steps == [("fsync", new_file), ("replace", new_file), ("fsync", directory)]
    assert path.read_text(encoding="utf-8") == "42\n"


def test_a_one_shot_run_keeps_the_saved_id_until_the_body_sets_one(tmp_path: Path) -> None:
    # A one-shot body starts without an ID: its first events carry "", which there
    # means "none yet", not "reset": the resume point of earlier runs must survive.
    state = StateFile(str(tmp_path / "id"))
    state.save("5")
    resume = Resume(state, "5", fresh_parser=True)
    resume.delivered("")
    resume.delivered("")
    assert state.load() == "5"
    resume.delivered("6")
    assert state.load() == "6"
    resume.delivered("")  # now the body did reset it
    assert state.load() == ""


def test_a_long_lived_stream_saves_a_reset_id(tmp_path: Path) -> None:
    state = StateFile(str(tmp_path / "id"))
    state.save("5")
    resume = Resume(state, "5", fresh_parser=False)
    resume.delivered("")  # its parser started from "5": "" is a reset by the server
    assert state.load() == ""


def test_an_unchanged_id_is_not_written_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = StateFile(str(tmp_path / "id"))
    state.save("5")
    writes: list[str] = []
    real_save = StateFile.save
    monkeypatch.setattr(StateFile, "save", lambda self, i: (writes.append(i), real_save(self, i)))
    resume = Resume(state, "5", fresh_parser=False)
    for event_id in ["5", "5", "6", "6", "6", "7"]:
        resume.delivered(event_id)
    assert writes == ["6", "7"]
    assert state.load() == "7"


@pytest.mark.parametrize(
    ("content", "loaded"),
    [
        (b"7\n", "7"),
        (b"7", "7"),
        (b"XX-42\n", "XX-42"),
        (b"7\r\n", "7"),  # edited on Windows
        (b"\n", ""),
        (b"", ""),
        ("\u20ac 9\n".encode(), "\u20ac 9"),
    ],
)
def test_load_reads_one_id_with_or_without_its_newline(
    tmp_path: Path, content: bytes, loaded: str
) -> None:
    path = tmp_path / "id"
    path.write_bytes(content)
    assert StateFile(str(path)).load() == loaded


def test_load_of_a_missing_file_is_none(tmp_path: Path) -> None:
    assert StateFile(str(tmp_path / "never-written")).load() is None


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"7\n\n", "does not hold one event ID"),
        (b"7\r8\n", "does not hold one event ID"),  # read as text: the CR is a line end
        (b"a\0b\n", "does not hold one event ID"),
        (b"\xff\n", "cannot read"),
    ],
)
def test_load_refuses_what_is_not_one_event_id_and_names_the_file(
    tmp_path: Path, content: bytes, why: str
) -> None:
    path = tmp_path / "id"
    path.write_bytes(content)
    with pytest.raises(StateError, match=why) as info:
        StateFile(str(path)).load()
    assert str(path) in str(info.value)


def test_a_state_file_that_cannot_be_read_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="cannot read the state file") as info:
        StateFile(str(tmp_path)).load()  # a directory
    assert str(tmp_path) in str(info.value)


def test_a_save_into_a_missing_directory_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gone" / "id"
    with pytest.raises(StateError, match="cannot write the state file") as info:
        StateFile(str(path)).save("1")
    assert str(path) in str(info.value)


def test_a_failed_cleanup_does_not_hide_why_the_save_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def replace(src: str, dst: str) -> None:
        raise PermissionError("replace refused")

    def unlink(path: str) -> None:
        raise PermissionError("unlink refused")

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "unlink", unlink)
    with pytest.raises(StateError, match="replace refused"):
        StateFile(str(tmp_path / "id")).save("1")
