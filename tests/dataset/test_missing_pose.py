"""A store whose rows lack a head pose (made before it, or where none could be solved)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import Extracted, copy_store
from store_checks import drop_columns

from featstore import FeatureDataset


def test_a_store_without_pose_columns_still_gives_samples(
    extracted: Extracted, tmp_path: Path
) -> None:
    store = copy_store(extracted.store, tmp_path / "store")
    drop_columns(store, ["euler_angles", "rotation_matrix", "pose_landmarks_3d"])
    reference = FeatureDataset(extracted.store, cache_dir=tmp_path / "ref")
    dataset = FeatureDataset(store, cache_dir=tmp_path / "cache", extra_fields=["euler_angles"])
    assert len(dataset) == len(reference) > 0
    for i in range(len(dataset)):  # every sample in its place, the missing pose NaN
        np.testing.assert_array_equal(
            dataset[i]["input_features"].numpy(), reference[i]["input_features"].numpy()
        )
        assert np.isnan(dataset[i]["euler_angles"].numpy()).all()
