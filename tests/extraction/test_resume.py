"""Idempotent reruns, redoing exactly what changed, and resuming after a killed process."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import MODEL, Dataset, Extracted, Models, copy_store, run_extract
from store_checks import (
    assert_same_rows,
    extract_command,
    identities,
    identity_rows,
    store_files,
    table_rows,
    table_version,
)

from featstore.store import Store
from featstore.store.maintenance import vacuum
from featstore.synthetic.images import draw_face, generate_face_tree, identity_name

pytestmark = pytest.mark.slow


def test_rerun_does_nothing_and_changes_no_byte(
    tmp_path: Path, extracted: Extracted, models: Models
) -> None:
    store = copy_store(extracted.store, tmp_path / "store")
    before = store_files(store)
    summary = run_extract(extracted.dataset, store, models)
    assert summary.images_extracted == 0
    assert summary.identities_extracted == 0
    assert summary.identities_skipped == summary.identities_in_input
    assert summary.run_counts == {"ok": 0, "no_face": 0, "unreadable": 0}
    assert summary.store_counts == extracted.summary.store_counts
    assert store_files(store) == before


def test_files_a_killed_writer_never_committed_are_invisible(
    tmp_path: Path, extracted: Extracted, models: Models
) -> None:
    """A kill between writing a data file and committing it leaves a Parquet file that no
    version lists: readers never see it, a rerun ignores it, vacuum removes it."""
    store = copy_store(extracted.store, tmp_path / "store")
    rows = table_rows(store)
    folder = store / f"model={MODEL}"
    orphan = folder / "part-00000-killed-before-commit.zstd.parquet"
    pq.write_table(rows.slice(0, 5), orphan)
    assert run_extract(extracted.dataset, store, models).images_extracted == 0
    assert_same_rows(table_rows(store), rows)
    count = Store(store).sql("SELECT count(*) AS n FROM images")["n"][0].as_py()
    assert count == rows.num_rows
    # Dated before the table's newest commit (a file newer than it may still be committed).
    stat = orphan.stat()
    os.utime(orphan, ns=(stat.st_atime_ns, stat.st_mtime_ns - 3600 * 10**9))
    removed = vacuum(store, retain_hours=0, no_writer_running=True)
    assert str(orphan) in {str(p) for v in removed for p in _absolute(folder, v.removed)}
    assert not orphan.exists()
    assert_same_rows(table_rows(store), rows)


def _absolute(folder: Path, removed: list[str]) -> list[Path]:
    return [Path(p) if Path(p).is_absolute() else folder / p for p in removed]


def test_a_changed_frame_redoes_exactly_its_identity(
    tmp_path: Path, mini_dataset: Dataset, models: Models
) -> None:
    root = tmp_path / "data"
    shutil.copytree(mini_dataset.root, root)
    dataset = Dataset(root, root / "face", root / "video")
    store = tmp_path / "store"
    assert run_extract(dataset, store, models).images_extracted == 8
    changed, kept = identity_name(1), identity_name(0)
    kept_before = identity_rows(store, kept)
    old = identity_rows(store, changed)
    version = table_version(store)

    frame = dataset.video_dir / changed / "frame_0000.jpg"
    draw_face(center=(120.0, 100.0), seed=99).save(frame, quality=90)
    summary = run_extract(dataset, store, models)
    assert summary.identities_extracted == 1
    assert summary.images_extracted == 4  # its frontal image and its 3 frames
    assert identity_rows(store, kept) == kept_before  # not rewritten: same extracted_at
    assert table_version(store) == version + 1  # one commit replaced the identity's rows
    new = identity_rows(store, changed)
    assert len(new) == len(old)
    assert new[1]["image_path"] == f"video/{changed}/frame_0000.jpg"
    assert new[1]["box"] != old[1]["box"]
    for a, b in zip(new[2:], old[2:], strict=True):  # the other frames: same numbers
        assert a["status"] == b["status"]
        if a["features"] is not None:
            np.testing.assert_allclose(a["features"], b["features"], rtol=0, atol=1e-5)
    assert run_extract(dataset, store, models).images_extracted == 0


# Killed once the first identity is committed; the other five take seconds more.
KILLED_IDENTITIES, KILLED_FRAMES = 6, 4


def test_resume_after_kill_equals_an_uninterrupted_run(tmp_path: Path, models: Models) -> None:
    face_dir, video_dir = generate_face_tree(
        tmp_path / "data", identities=KILLED_IDENTITIES, frames_per_identity=KILLED_FRAMES, seed=3
    )
    dataset = Dataset(tmp_path / "data", face_dir, video_dir)
    store = tmp_path / "killed"
    proc = subprocess.Popen(
        [*extract_command(dataset, store, models), "--commit-every", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while not identities(store):
            assert proc.poll() is None, proc.communicate()[0].decode(errors="replace")
            assert time.monotonic() < deadline, "no identity committed within 120 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        output = proc.communicate()[0].decode(errors="replace")
    assert proc.returncode == -signal.SIGKILL, output
    written = identities(store)
    assert 1 <= len(written) < KILLED_IDENTITIES, (
        "the run finished before it was killed: make it bigger"
    )
    rows = table_rows(store)
    for name in written:  # every committed identity is whole
        assert rows.filter(pc.equal(rows.column("identity"), name)).num_rows == KILLED_FRAMES + 1

    resumed = run_extract(dataset, store, models)
    assert resumed.identities_extracted == KILLED_IDENTITIES - len(written)
    assert resumed.identities_skipped == len(written)

    reference = tmp_path / "reference"
    assert run_extract(dataset, reference, models).images_extracted == KILLED_IDENTITIES * (
        KILLED_FRAMES + 1
    )
    assert Store(store).model(MODEL).provenance == Store(reference).model(MODEL).provenance
    assert_same_rows(table_rows(store), table_rows(reference))
