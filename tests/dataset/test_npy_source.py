"""FeatureDataset over face000's npy directory: the seed's Aligned3DFaceDataset pairs and
numbers; the same keypoints from a store; pose_landmarks_3d from a 3D JSON."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import Extracted, Models
from npy_trees import edge_tree, extract_arcface

from featstore.dataset.feature_dataset import FeatureDataset
from featstore.npy_dir.export import export_npy
from featstore.trainer_json.export import export_json

FIELDS = ("keypoints_3d", "front_keypoints_3d", "pose_landmarks_3d", "image_path")


@pytest.fixture(scope="module")
def npy(tmp_path_factory: pytest.TempPathFactory, models: Models) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("npy_dataset")
    store = extract_arcface(edge_tree(root / "tree"), root / "store", models)
    export_npy(store, out=root / "dir")
    return store, root / "dir"


def _load(folder: Path, side: str) -> tuple[dict, np.ndarray, np.ndarray]:  # type: ignore[type-arg]
    meta = json.loads((folder / f"{side}_metadata.json").read_text(encoding="utf-8"))
    return meta, np.load(folder / f"{side}_feature.npy"), np.load(folder / f"{side}_keypoints.npy")


def _seed_keypoints(original: list, scale: float) -> np.ndarray:  # type: ignore[type-arg]
    """Aligned3DFaceDataset._normalize_landmarks_with_self_center on one float32 row."""
    row = np.array(original, dtype=np.float32)
    return (row - np.mean(row, axis=0)) * scale


def _pairs(folder: Path) -> list[tuple[int, int]]:
    front, _, _ = _load(folder, "front")
    video, _, _ = _load(folder, "video")
    pairs = []
    for f, row in enumerate(front["metadata"]):
        for v, frame in enumerate(video["metadata"]):
            if frame["person_name"] == row["person_name"]:
                pairs.append((f, v))
    return pairs


@pytest.mark.parametrize("empty_video_originals", [False, True])
def test_pairs_and_numbers_are_the_seed_datasets(
    npy: tuple[Path, Path], tmp_path: Path, empty_video_originals: bool
) -> None:
    folder = npy[1]
    if empty_video_originals:  # a fresh seed-script directory
        folder = tmp_path / "seedlike"
        shutil.copytree(npy[1], folder)
        path = folder / "video_metadata.json"
        meta = json.loads(path.read_text(encoding="utf-8"))
        meta["landmarks_3d_original"] = []
        path.write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
    dataset = FeatureDataset(
        folder, position_encoding="euler_angles", extra_fields=FIELDS, cache_dir=tmp_path / "c"
    )
    front, front_features, _ = _load(folder, "front")
    video, video_features, video_keypoints = _load(folder, "video")
    scale = front["standard_info"]["standard_scale"]
    pairs = _pairs(folder)
    assert len(dataset) == len(pairs) == 14 - 1  # the orphan video has no front row
    assert dataset.identities[:2] == ["Anne Marie", "Anne"]  # front file-name order
    for i, (f, v) in enumerate(pairs):
        sample = dataset[i]
        assert sample["person_name"] == front["metadata"][f]["person_name"]
        assert np.array_equal(sample["input_features"].numpy(), video_features[v])
        assert np.array_equal(sample["target_features"].numpy(), front_features[f])
        pose = np.array(video["poses"][v], np.float32)
        assert np.array_equal(sample["position_encoding"].numpy(), pose)
        if empty_video_originals:
            expected = video_keypoints[v].astype(np.float32)
            assert np.isnan(sample["pose_landmarks_3d"].numpy()).all()
        else:
            expected = _seed_keypoints(video["landmarks_3d_original"][v], scale)
        assert np.array_equal(sample["keypoints_3d"].numpy(), expected)
        front_expected = _seed_keypoints(front["landmarks_3d_original"][f], scale)
        assert np.array_equal(sample["front_keypoints_3d"].numpy(), front_expected)


def test_a_store_gives_the_same_keypoints(npy: tuple[Path, Path], tmp_path: Path) -> None:
    store, folder = npy
    options = {"position_encoding": "euler_angles", "extra_fields": FIELDS}
    from_dir = FeatureDataset(folder, cache_dir=tmp_path / "a", **options)  # type: ignore[arg-type]
    from_store = FeatureDataset(store, cache_dir=tmp_path / "b", **options)  # type: ignore[arg-type]
    by_path = {s["image_path"].rsplit("/video/", 1)[1]: s for s in from_store}
    assert len(by_path) == len(from_dir)
    for sample in from_dir:
        other = by_path[sample["image_path"].rsplit("/video/", 1)[1]]
        for key in ("input_features", "target_features", *FIELDS[:3]):
            assert np.array_equal(sample[key].numpy(), other[key].numpy()), key


def test_3d_json_pose_landmarks_are_its_landmarks_3d(extracted: Extracted, tmp_path: Path) -> None:
    """face000's TransformerFaceDataset3D feeds `keypoints_3d` = float32(landmarks_3d)."""
    out = tmp_path / "valid_images_3d.json"
    export_json(extracted.store, out=out, format="3d")
    dataset = FeatureDataset(
        out,
        position_encoding="euler_angles",
        extra_fields=("pose_landmarks_3d",),
        cache_dir=tmp_path / "c",
    )
    data = json.loads(out.read_text(encoding="utf-8"))
    expected = [
        np.array(frame["landmarks_3d"], dtype=np.float32)
        for name in sorted(data)
        for frame in data[name]["video_data"]
    ]
    assert len(dataset) == len(expected) > 0
    for sample, want in zip(dataset, expected, strict=True):
        assert np.array_equal(sample["pose_landmarks_3d"].numpy(), want)
    store = FeatureDataset(
        extracted.store,
        position_encoding="euler_angles",
        extra_fields=("pose_landmarks_3d",),
        cache_dir=tmp_path / "d",
    )
    assert [s["pose_landmarks_3d"].tolist() for s in store] == [w.tolist() for w in expected]


def test_keypoints_are_made_only_when_asked(
    npy: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store's keypoints need export-npy's scale (every frontal pose solved again): a
    Dataset that does not ask for them neither solves the poses nor lacks anything else."""
    import featstore.dataset.npy_source as npy_source

    store, _ = npy
    cache = tmp_path / "c"
    options = {"position_encoding": "euler_angles", "cache_dir": cache}
    with_keypoints = FeatureDataset(store, extra_fields=FIELDS, **options)  # type: ignore[arg-type]

    def no_scale(info: object) -> None:
        raise AssertionError("solved the frontal poses for keypoints nobody asked for")

    monkeypatch.setattr(npy_source, "_export_scale", no_scale)
    others = ("pose_landmarks_3d", "image_path", "euler_angles")
    without = FeatureDataset(store, extra_fields=others, **options)  # type: ignore[arg-type]
    assert len(without) == len(with_keypoints) > 0
    for a, b in zip(with_keypoints, without, strict=True):
        assert a["person_name"] == b["person_name"]
        assert a["image_path"] == b["image_path"]
        assert "keypoints_3d" not in b
        for key in ("input_features", "target_features", "position_encoding", *others[:1]):
            assert np.array_equal(a[key].numpy(), b[key].numpy(), equal_nan=True), key
    # Each selection keeps its own folder: asking for the keypoints again reuses theirs.
    again = FeatureDataset(store, extra_fields=FIELDS, **options)  # type: ignore[arg-type]
    assert np.array_equal(again[0]["keypoints_3d"].numpy(), with_keypoints[0]["keypoints_3d"])
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 2
