"""export-npy (SPEC §9): the seed's eight files, byte for byte, from a store."""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import Models
from featstore_cli.main import main
from npy_trees import ARCFACE, edge_tree, extract_arcface

from featstore.errors import InputError, StoreError
from featstore.npy_dir import export as export_module
from featstore.npy_dir.export import export_npy
from featstore.npy_dir.json_text import value_text
from featstore.npy_dir.layout import FILE_NAMES, keypoints, standard_info
from featstore.npy_dir.npy_blocks import NpyWriter

MODEL_3D = np.array(
    [[-36, 13, -42], [36, 13, -42], [0, 0, 0], [-25, -30, -42], [25, -30, -42]], np.float32
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, models: Models) -> Path:
    root = tmp_path_factory.mktemp("npy_tree")
    return extract_arcface(edge_tree(root / "tree"), root / "store", models)


@pytest.fixture(scope="module")
def exported(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("npy_out") / "dir"
    summary = export_npy(store, out=out)
    assert summary.model == ARCFACE
    return out


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def seed_pose(kps: np.ndarray, width: int, height: int) -> tuple[list[float], np.ndarray]:
    """SPEC §7 as the seed writes it: EPnP on float32 inputs, math.atan2 / math.degrees."""
    camera = np.array([[width, 0, width / 2.0], [0, width, height / 2.0], [0, 0, 1]], np.float32)
    ok, rvec, tvec = cv2.solvePnP(
        MODEL_3D, kps, camera, np.zeros((4, 1), np.float32), flags=cv2.SOLVEPNP_EPNP
    )
    assert ok
    r, _ = cv2.Rodrigues(rvec)
    sy = math.sqrt(r[0, 0] * r[0, 0] + r[1, 0] * r[1, 0])
    yaw, pitch, roll = (
        math.atan2(r[1, 0], r[0, 0]),
        math.atan2(-r[2, 0], sy),
        math.atan2(r[2, 1], r[2, 2]),
    )
    euler = [math.degrees(yaw), math.degrees(pitch), math.degrees(roll)]
    return euler, (r @ MODEL_3D.T + tvec).T


def test_the_eight_files_and_their_types(exported: Path) -> None:
    assert sorted(os.listdir(exported)) == sorted(FILE_NAMES)
    for side in ("front", "video"):
        meta = _json(exported / f"{side}_metadata.json")
        features = np.load(exported / f"{side}_feature.npy", allow_pickle=False)
        kps = np.load(exported / f"{side}_keypoints.npy", allow_pickle=False)
        n = meta["num_samples"]
        assert features.dtype == np.dtype("<f4") and features.shape == (n, 512)
        assert kps.dtype == np.dtype("<f8") and kps.shape == (n, 5, 3)
        assert meta["feature_dim"] == 512
        for key in ("metadata", "poses", "boxes", "landmarks_2d", "landmarks_3d_original"):
            assert len(meta[key]) == n, key
        # np.save's own bytes: header for the final shape, C order, little-endian.
        for array, name in ((features, "feature"), (kps, "keypoints")):
            buffer = io.BytesIO()
            np.save(buffer, array)
            assert (exported / f"{side}_{name}.npy").read_bytes() == buffer.getvalue()


def test_order_persons_names_and_frame_index(exported: Path) -> None:
    front = [m["person_name"] for m in _json(exported / "front_metadata.json")["metadata"]]
    # By file name including '.jpg': 'Anne Marie.jpg' < 'Anne.jpg' although 'Anne' < 'Anne Marie'.
    assert front == ["Anne Marie", "Anne", "novideo", "person_000", "person_001", "person_002"]
    video = _json(exported / "video_metadata.json")["metadata"]
    persons = [m["person_name"] for m in video]
    assert persons == sorted(persons)
    assert persons[0] == "Anne" and "orphan" in persons  # no join with the front side
    assert video[0] == {
        "person_name": "Anne",
        "image_path": "video/Anne/f0.jpg",
        "image_size": [320, 240],
        "frame_index": "f0",
    }
    assert all(isinstance(m["frame_index"], str) for m in video)


def test_failed_images_text_is_the_seeds(exported: Path) -> None:
    expected = (
        '{\n  "total_images": 7,\n  "successful": 6,\n  "failed": 1,\n  "failed_details": {\n'
        '    "no_face_detected": [],\n    "no_landmarks": [],\n    "read_error": [\n      {\n'
        '        "path": "face/bad.jpg",\n        "person_name": "bad",\n'
        '        "error": "empty file (0 bytes)"\n      }\n    ],\n    "feature_error": []\n'
        "  }\n}"
    )
    assert (exported / "front_failed_images.json").read_text(encoding="utf-8") == expected
    video = _json(exported / "video_failed_images.json")
    assert list(video) == [
        "total_images",
        "skipped_persons",
        "processed_persons",
        "successful",
        "failed",
        "failed_details",
    ]
    details = video["failed_details"]
    assert [e["path"] for e in details["read_error"]] == ["video/Anne/broken.jpg"]
    assert [e["path"] for e in details["no_face_detected"]] == [
        f"video/person_00{i}/frame_0003.jpg" for i in range(3)
    ]
    assert video["processed_persons"] == 6 and video["skipped_persons"] == 0
    assert video["total_images"] == video["successful"] + video["failed"] == 3 * 4 + 5 + 1


def test_metadata_is_json_dump_of_the_seeds_float64_values(exported: Path, store: Path) -> None:
    """Every number re-derived here from SPEC §7/§9 (math.atan2, the seed's normalisation),
    the text json.dump(indent=2, ensure_ascii=False) of it, without a trailing newline."""
    for side in ("front", "video"):
        text = (exported / f"{side}_metadata.json").read_text(encoding="utf-8")
        meta = json.loads(text)
        assert text == json.dumps(meta, indent=2, ensure_ascii=False)
        for i, row in enumerate(meta["metadata"]):
            kps = np.array(meta["landmarks_2d"][i], np.float32)
            euler, original = seed_pose(kps, *row["image_size"])
            assert meta["poses"][i] == euler  # bit for bit (json round-trips float64)
            assert meta["landmarks_3d_original"][i] == original.tolist()
    front = _json(exported / "front_metadata.json")
    originals = np.array(front["landmarks_3d_original"])
    info = standard_info(originals)
    assert front["standard_info"] == info.as_json
    assert list(front["standard_info"]) == [
        "standard_center",
        "standard_scale",
        "standard_landmarks",
        "mean_landmarks",
        "num_samples",
        "note",
    ]
    video = _json(exported / "video_metadata.json")
    kps = np.load(exported / "video_keypoints.npy")
    scale = front["standard_info"]["standard_scale"]
    for i, lm in enumerate(video["landmarks_3d_original"]):
        centred = np.array(lm) - np.mean(np.array(lm), axis=0)
        np.testing.assert_allclose(kps[i], centred * scale, rtol=0, atol=1e-15)


def test_euler_angles_use_math_atan2_not_numpy() -> None:
    """numpy's arctan2 differs from math.atan2 in the last bit for some inputs (SPEC §9):
    the pose module's angles are the math ones on every matrix."""
    from featstore.extraction.pose import euler_angles

    rng = np.random.default_rng(0)
    numpy_differs = 0
    for _ in range(500):
        r = rng.normal(size=(3, 3))
        sy = math.sqrt(r[0, 0] * r[0, 0] + r[1, 0] * r[1, 0])
        seed = [
            math.atan2(r[1, 0], r[0, 0]),
            math.atan2(-r[2, 0], sy),
            math.atan2(r[2, 1], r[2, 2]),
        ]
        assert euler_angles(r).tolist() == [math.degrees(a) for a in seed]
        numpy_differs += not np.array_equal(
            np.degrees(np.arctan2([r[1, 0], -r[2, 0], r[2, 1]], [r[0, 0], sy, r[2, 2]])),
            euler_angles(r),
        )
    assert numpy_differs > 0


def test_value_text_is_json_dumps() -> None:
    rng = np.random.default_rng(1)
    values: list[Any] = [
        {"a": rng.normal(size=(5, 3)).tolist(), "名": 'x"y\\z\n', "n": 88.0, "i": 3},
        [],
        {},
        [[1e-05, -0.0, 1e300, 113.5999984741211]],
        {"nested": [{"k": [True, False, None]}]},
    ]
    for value in values:
        for depth in (0, 2):
            expected = json.dumps(value, indent=2, ensure_ascii=False)
            assert value_text(value, depth) == expected.replace("\n", "\n" + "  " * depth)


def test_npy_writer_bytes_equal_np_save(tmp_path: Path) -> None:
    array = np.random.default_rng(2).normal(size=(7, 5, 3))
    writer = NpyWriter(tmp_path / "a.npy", np.dtype("<f8"), array.shape)
    writer.append(array[:3])
    writer.append(array[3:])
    writer.close()
    buffer = io.BytesIO()
    np.save(buffer, array)
    assert (tmp_path / "a.npy").read_bytes() == buffer.getvalue()


def test_keypoints_row_by_row_as_the_seed() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        rotation = rng.normal(size=(3, 3))
        landmarks = (rotation @ MODEL_3D.T + rng.normal(size=(3, 1)) * 300).T  # F-order
        scale = np.float64(0.0213)
        expected = (landmarks - np.mean(landmarks, axis=0)) * scale
        assert np.array_equal(keypoints(landmarks, scale), expected)


def test_reexport_replaces_an_earlier_export(exported: Path, store: Path) -> None:
    before = {name: (exported / name).read_bytes() for name in FILE_NAMES}
    export_npy(store, out=exported)
    assert {name: (exported / name).read_bytes() for name in FILE_NAMES} == before
    assert not [n for n in os.listdir(exported.parent) if n.startswith(".")]


def test_a_failed_export_leaves_the_previous_directory(
    exported: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {name: (exported / name).read_bytes() for name in FILE_NAMES}

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError("disk full")

    monkeypatch.setattr(export_module, "standard_info", broken)
    with pytest.raises(StoreError):
        export_npy(store, out=exported)
    assert {name: (exported / name).read_bytes() for name in FILE_NAMES} == before
    assert not [n for n in os.listdir(exported.parent) if n.startswith(".")]


def test_refuses_a_folder_that_is_not_an_export(store: Path, tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("keep me")
    with pytest.raises(InputError, match=r"holds other files .*thesis\.tex"):
        export_npy(store, out=tmp_path / "mine")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "keep me"
    with pytest.raises(InputError, match="inside the store"):
        export_npy(store, out=store / "npy")


def test_cli_export_npy_and_other_models(store: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["export-npy", "--store", str(store), "--out", str(tmp_path / "d")]
    )
    assert result.exit_code == 0, result.output
    assert "front rows" in result.output
    result = CliRunner().invoke(
        main,
        ["export-npy", "--store", str(store), "--out", str(tmp_path / "e"), "--where", "false"],
    )
    assert result.exit_code == 1 and "no video row" in result.output
