"""The one atomic writer: a reader sees the old content or the whole new one, and a failure leaves no trace."""

from __future__ import annotations

import os

import pytest

from bigbird_pegasus.checkpoint.atomic import (TEMPORARY_MARK, remove_leftovers, stage_file, write_file_atomically,
                                               write_folder_atomically)


def leftovers(folder) -> list[str]:
    return [name for name in os.listdir(folder) if TEMPORARY_MARK in name]


def test_a_file_is_replaced_whole(tmp_path):
    path = tmp_path / "out.txt"
    write_file_atomically(path, "first\n")
    write_file_atomically(path, "second\n")
    assert path.read_text() == "second\n" and leftovers(tmp_path) == []
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.bin"
    write_file_atomically(path, "old")

    def half_then_fail(temporary: str) -> None:
        with open(temporary, "w") as file:
            file.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_file_atomically(path, half_then_fail)
    assert path.read_text() == "old" and leftovers(tmp_path) == []


def test_a_staged_file_is_hidden_until_renamed(tmp_path):
    staged = stage_file(tmp_path, "model.safetensors", "content")
    assert os.path.basename(staged).startswith(".model.safetensors" + TEMPORARY_MARK)
    assert os.listdir(tmp_path) == [os.path.basename(staged)] and open(staged).read() == "content"


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "final"
    write_folder_atomically(target, lambda folder: (folder / "a.txt").write_text("one"))
    write_folder_atomically(target, lambda folder: (folder / "b.txt").write_text("two"))
    assert sorted(os.listdir(target)) == ["b.txt"]

    def fail(folder):
        (folder / "c.txt").write_text("three")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        write_folder_atomically(target, fail)
    assert sorted(os.listdir(target)) == ["b.txt"] and leftovers(tmp_path) == []


def test_leftovers_of_a_killed_writer_are_removed(tmp_path):
    (tmp_path / f".checkpoint-7{TEMPORARY_MARK}123").mkdir()
    (tmp_path / f".out.jsonl{TEMPORARY_MARK}abcd1234").write_text("torn")
    (tmp_path / "kept.txt").write_text("kept")
    remove_leftovers(tmp_path)
    assert os.listdir(tmp_path) == ["kept.txt"]


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
