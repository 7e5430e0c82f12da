"""Inputs that break naive code: every one ends as a row with its reason or a named note.

Symlink loops, non-UTF-8 names, FIFOs, folders, dangling symlinks and devices named like
images; a same-size rewrite with its mtime restored; control characters in names.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import MODEL, Dataset, Models, run_extract
from featstore_cli.main import main
from store_checks import extract_args

from featstore.errors import printable, printable_message
from featstore.extraction.decoding import DecodeDataset, ImageTask
from featstore.extraction.images import UnreadableImageError, decode_image
from featstore.extraction.inputs import scan_inputs, storable_name
from featstore.store import Store

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX file types and names")

NON_UTF8 = os.fsdecode(b"fr\xe9me.jpg")  # the name Python lists for those bytes


def copy_dataset(source: Dataset, root: Path) -> Dataset:
    shutil.copytree(source.root, root, symlinks=True)
    return Dataset(root, root / "face", root / "video")


def image_rows(store: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(identity, image_path) -> the row, through the store's own `images` view."""
    with Store(store).connect(model=MODEL) as con:
        table = con.sql("SELECT identity, image_path, role, status, error FROM images").fetchall()
    return {
        (identity, path): {"role": role, "status": status, "error": error}
        for identity, path, role, status, error in table
    }


def run_with_deadline(call: Any, seconds: float = 120.0) -> Any:
    """`call()` in a thread; a hang (a blocking open of a FIFO) fails the test, not the run."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "extract blocked (it opened something that never answers)"
    if "error" in result:
        raise result["error"]
    return result["value"]


@pytest.fixture
def hostile(tmp_path: Path, mini_dataset: Dataset) -> Dataset:
    """The mini dataset plus every hostile entry of issue 14 point 5."""
    data = copy_dataset(mini_dataset, tmp_path / "data")
    person = sorted(p for p in data.video_dir.iterdir() if p.is_dir())[0]
    good = sorted(person.iterdir())[0]
    (person / "loop.jpg").symlink_to("loop.jpg")  # ELOOP
    (person / "dangling.jpg").symlink_to("no_such_file.jpg")
    (person / "zero.jpg").symlink_to("/dev/zero")
    os.mkfifo(person / "fifo.jpg")
    (person / "folder.jpg").mkdir()
    shutil.copyfile(good, os.fsencode(person) + b"/fr\xe9me.jpg")
    # A whole identity whose name is not UTF-8, and a video entry that loops.
    shutil.copyfile(
        sorted(data.face_dir.iterdir())[0], os.fsencode(data.face_dir) + b"/\xe9t\xe9.jpg"
    )
    (data.video_dir / "looping").symlink_to("looping")
    (data.video_dir / "stray.jpg").write_bytes(b"not in an identity folder")
    return data


def test_scan_never_fails_on_hostile_entries(hostile: Dataset) -> None:
    tree = scan_inputs(hostile.face_dir, hostile.video_dir)
    frames = {p.name for i in tree.identities for p in i.frames}
    assert {"loop.jpg", "dangling.jpg", "zero.jpg", "fifo.jpg", "folder.jpg", NON_UTF8} <= frames
    assert "\\xe9t\\xe9" in [i.identity for i in tree.identities]
    assert tree.skipped_entries == [
        "looping (a symbolic link loop)",
        "stray.jpg (not a folder)",
    ]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("loop.jpg", "symbolic link loop"),
        ("dangling.jpg", "dangling symbolic link"),
        ("zero.jpg", "not a regular file: a character device (through a symbolic link)"),
        ("fifo.jpg", "not a regular file: a FIFO (named pipe)"),
        ("folder.jpg", "not a regular file: a folder"),
    ],
)
def test_decode_refuses_what_is_no_regular_file(hostile: Dataset, name: str, reason: str) -> None:
    person = sorted(p for p in hostile.video_dir.iterdir() if p.is_dir() and not p.is_symlink())[0]
    with pytest.raises(UnreadableImageError, match=re.escape(reason)):
        run_with_deadline(lambda: decode_image(person / name), 30)


def test_a_fifo_swapped_in_after_the_check_does_not_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The type is checked again on the opened file (fstat), and the open never blocks."""
    import featstore.extraction.images as images

    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    real = images._not_regular
    calls: list[int] = []

    def regular_at_first(mode: int) -> str | None:  # the stat before the open saw a file
        calls.append(mode)
        return None if len(calls) == 1 else real(mode)

    monkeypatch.setattr(images, "_not_regular", regular_at_first)
    with pytest.raises(UnreadableImageError, match="a FIFO"):
        run_with_deadline(lambda: decode_image(fifo), 30)
    assert len(calls) == 2  # and fstat caught it on the opened file


def test_error_text_holds_no_absolute_path(tmp_path: Path) -> None:
    bad = tmp_path / "deep" / "not_an_image.jpg"
    bad.parent.mkdir()
    bad.write_text("text, not pixels\n", "utf-8")
    info = DecodeDataset([ImageTask("p", "frame", bad, 0)], 64)[0][0]
    assert info.error == "cannot identify image file (not an image format Pillow decodes)"
    assert str(tmp_path) not in info.error


def test_extract_turns_each_into_a_row_or_a_note(hostile: Dataset, models: Models) -> None:
    store = hostile.root / "store"
    summary = run_with_deadline(lambda: run_extract(hostile, store, models))
    rows = image_rows(store)
    person = sorted(p for p in hostile.video_dir.iterdir() if p.is_dir() and not p.is_symlink())[0]
    expected = {
        "loop.jpg": "symbolic link loop",
        "dangling.jpg": "dangling symbolic link",
        "zero.jpg": "not a regular file: a character device",
        "fifo.jpg": "not a regular file: a FIFO",
        "folder.jpg": "not a regular file: a folder",
        "fr\\xe9me.jpg": "file name is not valid UTF-8",
    }
    for name, reason in expected.items():
        row = rows[(person.name, f"video/{person.name}/{name}")]
        assert row["status"] == "unreadable", name
        assert row["error"].startswith(reason), (name, row["error"])
    face = rows[("\\xe9t\\xe9", "face/\\xe9t\\xe9.jpg")]
    assert face["status"] == "unreadable"
    assert face["error"].startswith("file name is not valid UTF-8")
    # Every error is about the file, never its absolute path.
    assert not any(str(hostile.root) in (r["error"] or "") for r in rows.values())
    text = summary.format()
    assert "note: 2 entries of the video folder skipped (not a folder): looping (a symbolic" in text
    assert "stray.jpg (not a folder)" in text
    # The rerun finds nothing changed: the hostile entries do not crash or redo it.
    again = run_with_deadline(lambda: run_extract(hostile, store, models))
    assert again.identities_extracted == 0


def test_storable_name_keeps_non_utf8_bytes_recoverable() -> None:
    stored = storable_name(NON_UTF8)
    assert stored == "fr\\xe9me.jpg"
    assert stored.encode("utf-8")  # a column can hold it
    assert stored.encode().decode("unicode_escape").encode("latin-1") == b"fr\xe9me.jpg"
    assert storable_name("张伟 o'brien.jpg") == "张伟 o'brien.jpg"


# --- point 2: a rewrite the size and mtime do not show ----------------------------------


def test_same_size_rewrite_with_mtime_restored_is_redone(
    tmp_path: Path, mini_dataset: Dataset, models: Models
) -> None:
    data = copy_dataset(mini_dataset, tmp_path / "data")
    store = tmp_path / "store"
    assert run_extract(data, store, models).identities_extracted == 2
    face = sorted(data.face_dir.iterdir())[0]
    before = face.stat()
    face.write_bytes(b"\0" * before.st_size)  # same size, other bytes
    os.utime(face, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (face.stat().st_size, face.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    summary = run_extract(data, store, models)
    assert summary.identities_extracted == 1
    row = image_rows(store)[(face.stem, f"face/{face.name}")]
    assert row["status"] == "unreadable"


# --- point 11: names with control characters ---------------------------------------------


FORGED = "\x1b[31mred\n  store: elsewhere"


def test_printable_escapes_controls_and_keeps_letters() -> None:
    assert printable(FORGED) == "\\x1b[31mred\\n  store: elsewhere"
    assert printable("张伟 \u2028\u202e") == "张伟 \\u2028\\u202e"
    assert printable(NON_UTF8) == "fr\\xe9me.jpg"
    assert printable_message("a\nb\x1b") == "a\nb\\x1b"


def test_extract_summary_escapes_names(
    tmp_path: Path, mini_dataset: Dataset, models: Models
) -> None:
    data = copy_dataset(mini_dataset, tmp_path / "data")
    face = sorted(data.face_dir.iterdir())[0]
    shutil.copyfile(face, data.face_dir / f"{FORGED}.jpg")  # a face without a video folder
    result = CliRunner().invoke(main, extract_args(data, tmp_path / "store", models))
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output
    assert "\\x1b[31mred\\n  store: elsewhere" in result.output
    assert [line for line in result.output.splitlines() if "store: elsewhere" in line] == [
        line for line in result.output.splitlines() if "\\x1b[31mred" in line
    ]
    info = CliRunner().invoke(main, ["info", "--store", str(tmp_path / "store")])
    assert info.exit_code == 0 and "\x1b" not in info.output


def test_error_messages_are_escaped(tmp_path: Path) -> None:
    missing = tmp_path / f"{FORGED}"
    result = CliRunner().invoke(main, ["info", "--store", str(missing)])
    assert result.exit_code == 1
    assert "\x1b" not in result.output
    assert "\\x1b[31m" in result.output
