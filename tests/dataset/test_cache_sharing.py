"""The Dataset cache shared by jobs: folders of versions in use are never evicted, a
damaged cache is never served (checked against its manifest's checksums when opened, then
rebuilt), a complete cache is read without taking the build lock (a read-only mount)."""

from __future__ import annotations

import gc
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from delta_checks import build_store

from featstore import FeatureDataset
from featstore.dataset.cache import FEATURES_FILE, FRAMES_FILE, IDENTITIES_FILE, MANIFEST_FILE
from featstore.errors import StoreError


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store with versions 1, 2 and 3 (one identity committed by each)."""
    folder = tmp_path / "store"
    build_store(folder, 3, per_commit=1)
    return folder


def _values(dataset: FeatureDataset) -> list[tuple[str, list[float], list[float]]]:
    return [
        (
            s["person_name"],
            s["input_features"].numpy().tolist(),
            s["target_features"].numpy().tolist(),
        )
        for s in (dataset[i] for i in range(len(dataset)))
    ]


def test_jobs_on_two_versions_keep_each_other_s_folder(store: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    job_a = FeatureDataset(store, version=1, cache_dir=cache)
    job_b = FeatureDataset(store, cache_dir=cache)  # the latest: a build of another version
    assert job_a.cache_folder != job_b.cache_folder
    assert (job_a.cache_folder / MANIFEST_FILE).is_file()
    worker = pickle.loads(pickle.dumps(job_a))  # what a spawned worker gets: paths only
    assert _values(worker) == _values(job_a)
    again_a = FeatureDataset(store, version=1, cache_dir=cache)  # A rebuilt or reused...
    assert (job_b.cache_folder / MANIFEST_FILE).is_file()  # ...B's folder stays
    assert _values(again_a) == _values(job_a)

    # Once no Dataset uses a version's folder, the next build of the source evicts it.
    a_folder = job_a.cache_folder
    del job_a, again_a, worker
    gc.collect()
    FeatureDataset(store, version=2, cache_dir=cache)
    assert not a_folder.exists()
    assert (job_b.cache_folder / MANIFEST_FILE).is_file()  # still in use


@pytest.mark.parametrize(
    ("name", "offset"),
    [(FEATURES_FILE, 17), (IDENTITIES_FILE, 663), (FRAMES_FILE, 200), (IDENTITIES_FILE, -9)],
)
def test_a_damaged_cache_is_rebuilt_never_served(
    store: Path, tmp_path: Path, name: str, offset: int
) -> None:
    cache = tmp_path / "cache"
    first = FeatureDataset(store, cache_dir=cache)
    want = _values(first)
    path = first.cache_folder / name
    data = bytearray(path.read_bytes())
    at = min(offset, len(data) - 1) if offset >= 0 else len(data) + offset
    data[at] = 37 if data[at] != 37 else 38  # the byte: a segfault on open
    del first
    gc.collect()
    path.write_bytes(bytes(data))
    again = FeatureDataset(store, cache_dir=cache)
    assert _values(again) == want
    assert (again.cache_folder / name).read_bytes() != bytes(data)


def test_a_damaged_cache_that_cannot_be_rebuilt_is_refused(store: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    folder = FeatureDataset(store, cache_dir=cache).cache_folder
    gc.collect()
    features = folder / FEATURES_FILE
    values = np.fromfile(features, np.float32)
    values[3] += 1.0  # a plausible value: served as data before
    values.tofile(features)
    lock = cache / f"{folder.name}.lock"  # the build lock cannot be taken (read-only)
    lock.unlink()
    lock.mkdir()
    with pytest.raises(StoreError, match=r"(?s)dataset cache .* damaged.*Hint"):
        FeatureDataset(store, cache_dir=cache)


def test_a_complete_cache_is_read_without_the_build_lock(store: Path, tmp_path: Path) -> None:
    """On a read-only mount the lock file cannot be opened for writing: not needed to read."""
    cache = tmp_path / "cache"
    first = FeatureDataset(store, cache_dir=cache)
    want = _values(first)
    lock = cache / f"{first.cache_folder.name}.lock"
    lock.unlink(missing_ok=True)
    lock.mkdir()  # open(lock, "a") fails, as EROFS would
    listing = sorted(p.name for p in cache.rglob("*"))
    again = FeatureDataset(store, cache_dir=cache)
    assert _values(again) == want
    assert sorted(p.name for p in cache.rglob("*")) == listing  # nothing written
    shutil.rmtree(lock)
