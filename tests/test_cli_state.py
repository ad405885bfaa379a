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
    with pytest.raises(StateError):
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
