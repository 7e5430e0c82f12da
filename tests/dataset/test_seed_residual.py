"""The seed's own trainer over featstore's JSON gets FeatureDataset's samples, bit for bit.

`seed_samples` is a stand-alone copy of what the seed's `TransformerFaceDataset`
(face000, train_transformer/dataset.py at 667af77) does with a new-format file: `json.load`
(float64), `np.array` of each list, the residual `target - input` in float64, then
`torch.FloatTensor` of each. Written here, not imported, so featstore cannot drift with it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from conftest import Extracted

from featstore.dataset.feature_dataset import FeatureDataset
from featstore.trainer_json.export import export_json


def seed_samples(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        valid_data = json.load(f)
    samples = []
    for person_name, person_data in valid_data.items():
        face_features = np.array(person_data["face_features"])
        for video_item in person_data["video_data"]:
            input_features = np.array(video_item["features"])
            angles = np.array(video_item["spherical_angles"])
            residual = face_features - input_features
            samples.append(
                {
                    "input_features": torch.FloatTensor(input_features),
                    "position_encoding": torch.FloatTensor(angles),
                    "target_features": torch.FloatTensor(face_features),
                    "target_residual": torch.FloatTensor(residual),
                    "person_name": person_name,
                }
            )
    return samples


def test_seed_trainer_over_the_export_equals_feature_dataset(
    extracted: Extracted, tmp_path: Path
) -> None:
    out = tmp_path / "valid_images.json"
    export_json(extracted.store, out=out)
    seed = seed_samples(out)
    from_store = FeatureDataset(extracted.store, cache_dir=tmp_path / "c1")
    from_json = FeatureDataset(out, cache_dir=tmp_path / "c2")
    assert len(seed) == len(from_store) == len(from_json) > 0
    differing = 0
    for i, expected in enumerate(seed):
        for dataset in (from_store, from_json):
            sample = dataset[i]
            assert sample["person_name"] == expected["person_name"]
            for key in ("input_features", "position_encoding", "target_features"):
                assert torch.equal(sample[key], expected[key]), (i, key)
            differing += int(
                not torch.equal(sample["target_residual"], expected["target_residual"])
            )
    assert differing == 0, f"target_residual differs in {differing} samples"
