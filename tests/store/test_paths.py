"""The one atomic write: a file or a folder is whole or absent, never torn."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from featstore.store.paths import AtomicPath, write_atomic


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    out.write_bytes(b"old")
    assert write_atomic(out, b"new content") == len(b"new content")
    assert out.read_bytes() == b"new content"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_a_failed_block_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="midway"), AtomicPath(out) as target:
        target.tmp.write_bytes(b"half")
        raise RuntimeError("midway")
    assert out.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_a_folder_replaces_a_torn_one(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / "torn").write_bytes(b"")
    with AtomicPath(folder) as target:
        assert target.tmp.parent == tmp_path and target.tmp.name.startswith("cache.tmp-")
        target.tmp.mkdir()
        (target.tmp / "whole").write_bytes(b"1")
    assert os.listdir(folder) == ["whole"]
    assert os.listdir(tmp_path) == ["cache"]


def test_a_failed_folder_is_removed(tmp_path: Path) -> None:
    with pytest.raises(OSError), AtomicPath(tmp_path / "cache") as target:
        target.tmp.mkdir()
        (target.tmp / "part").write_bytes(b"1")
        raise OSError("disk full")
    assert os.listdir(tmp_path) == []


def test_a_failed_rename_removes_the_temporary(tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "x").write_bytes(b"")  # a full folder: a file cannot be renamed over it
    with pytest.raises(OSError):
        write_atomic(out, b"data")
    assert sorted(os.listdir(tmp_path)) == ["taken"]


def test_the_suffix_names_the_temporary(tmp_path: Path) -> None:
    target = AtomicPath(tmp_path / "valid.json", suffix="tmp-123")
    assert target.tmp == tmp_path / "valid.json.tmp-123"
    assert AtomicPath(tmp_path / "a").tmp.name.startswith("a.tmp-")
