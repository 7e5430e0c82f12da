"""The input fingerprint's copy fallback: a dataset copied with `cp -a` (new inodes and
ctimes, same names, sizes, mtimes and bytes) is not extracted again; a same-size,
same-mtime file with other bytes is."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from conftest import MODEL, Dataset, Models, run_extract

from featstore.extraction.fingerprint import SEPARATOR, content_digest, stat_inputs
from featstore.extraction.inputs import scan_inputs
from featstore.store import Store


def _copy(root: Path, dest: Path) -> Dataset:
    """`cp -a`: shutil.copytree copies with copy2, which keeps mtimes (inodes are new)."""
    shutil.copytree(root, dest)
    return Dataset(dest, dest / "face", dest / "video")


def _rewrite_same_size_same_mtime(path: Path) -> None:
    """Other bytes, the same size, the mtime put back (what only the content tells)."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # inside the JPEG's entropy data: still decodes, other pixels
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


def test_a_cp_a_copy_is_not_extracted_again_unless_its_content_differs(
    mini_dataset: Dataset, models: Models, tmp_path: Path
) -> None:
    old = _copy(mini_dataset.root, tmp_path / "old" / "data")
    store = tmp_path / "store"
    run_extract(old, store, models)
    before = Store(store).model(MODEL)
    stored = before.fingerprints()
    assert all(len(f.split(SEPARATOR)) == 3 for f in stored.values()), stored

    new = _copy(old.root, tmp_path / "new" / "data")
    assert (new.face_dir / "person_000.jpg").stat().st_ino != (
        old.face_dir / "person_000.jpg"
    ).stat().st_ino
    rebased = run_extract(new, store, models, rebase=True).format()
    assert "extracted 0 images of 0 identities" in rebased, rebased
    assert "2 identities already up to date" in rebased, rebased
    after = Store(store).model(MODEL)
    assert after.files == before.files  # no row written (only the base dir recorded)
    assert after.version == before.version + 1
    assert after.provenance["base_dir"] == new.root.as_posix()

    other = _copy(old.root, tmp_path / "other" / "data")  # a copy, one frame changed
    _rewrite_same_size_same_mtime(other.video_dir / "person_001" / "frame_0000.jpg")
    redone = run_extract(other, store, models, rebase=True).format()
    assert "of 1 identity" in redone and "1 identity already up to date" in redone, redone


def test_the_copy_fallback_reads_the_files_only_when_sizes_and_mtimes_agree(
    mini_dataset: Dataset, tmp_path: Path
) -> None:
    data = _copy(mini_dataset.root, tmp_path / "data")
    inputs = scan_inputs(data.face_dir, data.video_dir).identities[0]
    stat = inputs.stat()
    content = content_digest(inputs.paths)
    assert content is not None
    recorded = stat.recorded(content)
    reads: list[int] = []

    def counted() -> str | None:
        reads.append(1)
        return content_digest(inputs.paths)

    assert stat.matches(recorded, counted) and not reads  # unchanged: a listing
    assert stat.matches(stat.stat, counted) and not reads  # rows of before the fallback
    copy = _copy(data.root, tmp_path / "copy")
    copied = scan_inputs(copy.face_dir, copy.video_dir).identities[0]
    copied_stat = copied.stat()
    assert copied_stat.stat != stat.stat and copied_stat.copy == stat.copy
    assert copied_stat.matches(recorded, lambda: content_digest(copied.paths))
    assert not copied_stat.matches(stat.stat, counted) and not reads  # old rows: redone
    os.utime(copied.paths[0], ns=(0, 10**9))  # another mtime: redone without reading
    touched = copied.stat()
    assert not touched.matches(recorded, counted) and not reads
    assert stat_inputs(inputs.identity, inputs.has_video_dir, inputs.paths) == stat
