"""A dataset cache that a killed construction left half-built is never used: it is rebuilt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from featstore import FeatureDataset
from featstore.dataset.cache import FEATURES_FILE, MANIFEST_FILE, open_columns
from featstore.errors import StoreError

DIM = 384

# Runs FeatureDataset(json) and kills itself (SIGKILL) once the first cache file is written.
KILLED_BUILD = """
import os, signal, sys
import featstore.dataset.cache as cache
real = cache._write_single_batch
def write_then_die(path, batch):
    real(path, batch)
    os.kill(os.getpid(), signal.SIGKILL)
cache._write_single_batch = write_then_die
from featstore import FeatureDataset
FeatureDataset(sys.argv[1], cache_dir=sys.argv[2])
"""


def write_json(path: Path) -> Path:
    rng = np.random.default_rng(0)

    def floats(*shape: int) -> list[float]:
        values: list[float] = rng.standard_normal(shape).astype(np.float32).tolist()
        return values

    document = {
        name: {
            "face_image_path": f"face/{name}.jpg",
            "face_features": floats(DIM),
            "face_landmarks_2d": floats(5, 2),
            "face_landmarks_3d": floats(5, 3),
            "face_box": floats(4),
            "video_data": [
                {
                    "image_path": f"video/{name}/{i}.jpg",
                    "features": floats(DIM),
                    "landmarks_2d": floats(5, 2),
                    "landmarks_3d": floats(5, 3),
                    "box": floats(4),
                    "spherical_angles": floats(5),
                    "avg_angle": floats(1)[0],
                }
                for i in range(3)
            ],
            "feature_dim": DIM,
            "dinov2_model": "dinov2_vits14",
        }
        for name in ("a", "b")
    }
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return path


def test_killed_first_construction_is_rebuilt(tmp_path: Path) -> None:
    source, cache = write_json(tmp_path / "valid_images.json"), tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_BUILD, str(source), str(cache)],
        capture_output=True,
        env=env,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    leftovers = [p for p in cache.iterdir() if ".tmp-" in p.name]
    assert leftovers and not list(cache.glob(f"*/{MANIFEST_FILE}"))  # half-built, not used

    dataset = FeatureDataset(source, cache_dir=cache)
    assert (dataset.cache_folder / MANIFEST_FILE).is_file()
    assert not [p for p in cache.iterdir() if ".tmp-" in p.name]  # the torn build is gone
    document = json.loads(source.read_text("utf-8"))
    assert len(dataset) == 6 and dataset.identities == ["a", "b"]
    want = np.asarray(document["b"]["video_data"][2]["features"], np.float32)
    assert np.array_equal(dataset[5]["input_features"].numpy(), want)


def test_a_damaged_features_file_is_rebuilt_and_named_when_mapped(tmp_path: Path) -> None:
    source, cache = write_json(tmp_path / "valid_images.json"), tmp_path / "cache"
    first = FeatureDataset(source, cache_dir=cache)
    want = first[5]["input_features"].numpy().copy()
    features = first.cache_folder / FEATURES_FILE
    torn = features.read_bytes()[:-4]  # a torn copy, a full disk
    features.write_bytes(torn)
    # A worker mapping the folder after the damage: named, with what to do.
    with pytest.raises(StoreError) as caught:
        open_columns(first.cache_folder)
    message = str(caught.value)
    assert str(features) in message and f"expected 6 x {DIM} float32" in message
    assert f"delete the folder {features.parent}" in message
    # A new Dataset checks the files against the manifest's checksums: rebuilt.
    del first
    again = FeatureDataset(source, cache_dir=cache)
    assert np.array_equal(again[5]["input_features"].numpy(), want)
