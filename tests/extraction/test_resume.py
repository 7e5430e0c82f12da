"""Idempotent reruns, redoing exactly what changed, and resuming after a killed process."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import MODEL, Dataset, Extracted, Models, copy_store, run_extract
from store_checks import assert_same_rows, data_files, extract_command, store_files, temporaries

from featstore.store.layout import DATA_FILE, model_dir, partition_file
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


def test_rerun_removes_what_an_overwrite_killed_while_deleting_left(
    tmp_path: Path, extracted: Extracted, models: Models
) -> None:
    """`--overwrite` moves the old model aside (`_trash-*`), then deletes it; a kill in
    between leaves old rows that `**/*.parquet` readers would mix with the new ones."""
    store = copy_store(extracted.store, tmp_path / "store")
    before = store_files(store)
    trash = store / "_trash-0123456789abcdef"
    shutil.copytree(model_dir(store, MODEL), trash)
    assert run_extract(extracted.dataset, store, models).images_extracted == 0
    assert not trash.exists()
    assert store_files(store) == before


def test_a_changed_frame_redoes_exactly_its_identity(
    tmp_path: Path, mini_dataset: Dataset, models: Models
) -> None:
    root = tmp_path / "data"
    shutil.copytree(mini_dataset.root, root)
    dataset = Dataset(root, root / "face", root / "video")
    store = tmp_path / "store"
    assert run_extract(dataset, store, models).images_extracted == 8
    changed, kept = identity_name(1), identity_name(0)
    kept_file = partition_file(store, MODEL, kept)
    kept_before = (kept_file.read_bytes(), kept_file.stat().st_mtime_ns)
    old = pq.read_table(partition_file(store, MODEL, changed)).to_pylist()

    frame = dataset.video_dir / changed / "frame_0000.jpg"
    draw_face(center=(120.0, 100.0), seed=99).save(frame, quality=90)
    summary = run_extract(dataset, store, models)
    assert summary.identities_extracted == 1
    assert summary.images_extracted == 4  # its frontal image and its 3 frames
    assert (kept_file.read_bytes(), kept_file.stat().st_mtime_ns) == kept_before
    new = pq.read_table(partition_file(store, MODEL, changed)).to_pylist()
    assert new[1]["image_path"] == f"video/{changed}/frame_0000.jpg"
    assert new[1]["box"] != old[1]["box"]
    for a, b in zip(new[2:], old[2:], strict=True):  # the other frames: same numbers
        assert a["status"] == b["status"]
        if a["features"] is not None:
            np.testing.assert_allclose(a["features"], b["features"], rtol=0, atol=1e-5)
    assert run_extract(dataset, store, models).images_extracted == 0


def test_resume_after_kill_equals_an_uninterrupted_run(tmp_path: Path, models: Models) -> None:
    face_dir, video_dir = generate_face_tree(
        tmp_path / "data", identities=8, frames_per_identity=6, seed=3
    )
    dataset = Dataset(tmp_path / "data", face_dir, video_dir)
    store = tmp_path / "killed"
    proc = subprocess.Popen(
        extract_command(dataset, store, models),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while not data_files(store):
            assert proc.poll() is None, proc.communicate()[0].decode(errors="replace")
            assert time.monotonic() < deadline, "no partition written within 120 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        output = proc.communicate()[0].decode(errors="replace")
    assert proc.returncode == -signal.SIGKILL, output
    written = data_files(store)
    assert 1 <= len(written) < 8, "the run finished before it was killed: make it bigger"
    for name in written:  # every file that exists is whole
        assert pq.read_table(store / name).num_rows == 7

    # A temporary file of the dead process, as a kill during a write leaves it.
    stale = temporaries(store)
    if not stale:
        folder = partition_file(store, MODEL, identity_name(7)).parent
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{DATA_FILE}.tmp-{socket.gethostname()}-{proc.pid}-0123abcd"
        tmp.write_bytes(b"PAR1 torn")
        stale = [tmp]
    # One of a live process (a concurrent run on this host) must survive.
    live = partition_file(store, MODEL, identity_name(6)).parent / (
        f"{DATA_FILE}.tmp-{socket.gethostname()}-{os.getppid()}-4567cdef"
    )
    live.parent.mkdir(parents=True, exist_ok=True)
    live.write_bytes(b"")

    resumed = run_extract(dataset, store, models)
    assert resumed.identities_extracted == 8 - len(written)
    assert resumed.identities_skipped == len(written)
    assert not any(p.exists() for p in stale)
    assert temporaries(store) == [live]
    live.unlink()

    reference = tmp_path / "reference"
    assert run_extract(dataset, reference, models).images_extracted == 8 * 7
    assert sorted(store_files(store)) == sorted(store_files(reference))
    assert (store / "model=dinov2_vits14" / "_provenance.json").read_bytes() == (
        reference / "model=dinov2_vits14" / "_provenance.json"
    ).read_bytes()
    for name in data_files(reference):
        assert_same_rows(pq.read_table(store / name), pq.read_table(reference / name))
