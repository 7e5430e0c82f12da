"""The trainer JSON's formats: one detector, and each format's identity object."""

from __future__ import annotations

import codecs
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from featstore.store.fields import FRAME_FIELDS, JSON_FORMATS
from featstore.trainer_json.formats import identity_format, identity_object
from featstore.trainer_json.identity_rows import IdentityReader
from featstore.trainer_json.identity_values import IdentityValues
from featstore.trainer_json.importer import import_json
from featstore.trainer_json.validate import validate_json


def _row(image: str) -> dict[str, Any]:
    """A store row holding every value, each a distinct marker."""
    return {"image_path": image, **{f.name: f"{image}:{f.name}" for f in FRAME_FIELDS}}


def _object(name: str) -> dict[str, Any]:
    face, frames = _row("face.jpg"), [_row("f0.jpg"), _row("f1.jpg")]
    return identity_object(
        JSON_FORMATS[name], face, frames, 5, model="dinov2_vits14", dim=384, rebase=str.upper
    )


@pytest.mark.parametrize("name", ["new", "3d"])
def test_each_key_holds_its_column(name: str) -> None:
    # The key order itself is checked on exported files (test_export_import, test_format_3d).
    obj, json_format = _object(name), JSON_FORMATS[name]
    assert obj["face_image_path"] == "FACE.JPG"
    assert [frame["image_path"] for frame in obj["video_data"]] == ["F0.JPG", "F1.JPG"]
    assert [obj[k] for k in ("total_video_images", "valid_video_images")] == [5, 2]
    assert [obj[k] for k in ("feature_dim", "dinov2_model")] == [384, "dinov2_vits14"]
    for field, key in json_format.fields():
        if key.face is not None:
            assert obj[key.face] == f"face.jpg:{field.name}"
        assert obj["video_data"][1][key.frame] == f"f1.jpg:{field.name}"
    assert len(obj) == 6 + len(json_format.face_keys())  # paths, video_data, counts
    assert len(obj["video_data"][0]) == 1 + len(json_format.fields())


def test_3d_landmarks_are_the_posed_ones_and_the_frontal_pose_comes_last() -> None:
    obj = _object("3d")
    assert obj["face_landmarks_3d"] == "face.jpg:pose_landmarks_3d"
    assert obj["video_data"][0]["landmarks_3d"] == "f0.jpg:pose_landmarks_3d"
    assert list(obj)[-2:] == ["face_euler_angles", "face_rotation_matrix"]


def test_old_format_object_is_paths_only() -> None:
    assert _object("old") == {"face_image_path": "FACE.JPG", "video_images": ["F0.JPG", "F1.JPG"]}


def test_identity_values_has_an_attribute_for_every_value_a_json_format_holds() -> None:
    attributes = {f.name for f in dataclasses.fields(IdentityValues)}
    for json_format in JSON_FORMATS.values():
        assert {f.name for f, _ in json_format.fields()} <= attributes, json_format.name


# -- the one detector ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identity", "expected"),
    [
        ({"face_features": [], "video_data": []}, "new"),
        ({"dinov2_model": "dinov2_vits14"}, "new"),  # any new-format field
        ({"face_features": [], "face_euler_angles": [0, 0, 0]}, "3d"),
        ({"video_data": [{"rotation_matrix": []}]}, "3d"),  # the first frame's pose
        ({"video_data": [{"features": []}, {"euler_angles": []}]}, "new"),
        ({"face_image_path": "a.jpg", "video_images": []}, "old"),
        ({"face_features": [], "video_images": []}, "new"),  # features win
        ({"face_image_path": "a.jpg"}, "unknown"),
        ({}, "unknown"),
    ],
)
def test_identity_format(identity: dict[str, Any], expected: str) -> None:
    assert identity_format(identity) == expected


def _identity(json_format: str, dim: int = 4, model: str = "tiny") -> dict[str, Any]:
    """A right identity of `json_format`, made from the declaration (values 0.5)."""

    def row(image: str) -> dict[str, Any]:
        values = {f.name: np.full(f.shape_for(dim), 0.5).tolist() for f in FRAME_FIELDS}
        return {"image_path": image, **values}

    return identity_object(
        JSON_FORMATS[json_format],
        row("face.jpg"),
        [row("f0.jpg")],
        1,
        model=model,
        dim=dim,
        rebase=str,
    )


# -- the one BOM rule: every reader skips it; validate reports it -----------------------------


def _write(path: Path, data: dict[str, Any], *, bom: bool) -> Path:
    path.write_bytes((codecs.BOM_UTF8 if bom else b"") + json.dumps(data).encode())
    return path


@pytest.mark.parametrize("json_format", ["new", "3d"])
def test_the_identity_reader_skips_a_bom(tmp_path: Path, json_format: str) -> None:
    data = {"a": _identity(json_format), "b": _identity(json_format)}
    got = {}
    for bom in (False, True):
        path = _write(tmp_path / f"{bom}.json", data, bom=bom)
        got[bom] = list(IdentityReader(path, tmp_path))
    assert [v.name for v in got[True]] == ["a", "b"]
    for plain, skipped in zip(got[False], got[True], strict=True):
        for field in dataclasses.fields(IdentityValues):
            a, b = getattr(plain, field.name), getattr(skipped, field.name)
            assert np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b


def test_import_json_skips_a_bom(tmp_path: Path) -> None:
    path = _write(tmp_path / "bom.json", {"a": _identity("new")}, bom=True)
    summary = import_json(path, store=tmp_path / "store")
    assert (summary.model, summary.identities, summary.frames) == ("tiny", 1, 1)


def test_validate_reports_a_bom_and_checks_the_rest(tmp_path: Path) -> None:
    data = {"a": _identity("new", dim=384, model="dinov2_vits14")}
    path = _write(tmp_path / "bom.json", data, bom=True)
    report = validate_json(path, check_paths=False)
    assert [(p.code, p.found) for p in report.problems] == [("Q3-encoding", "a UTF-8 BOM")]
    assert "featstore's readers skip it" in report.problems[0].message
    assert (report.format, report.identities, report.frames) == ("new", 1, 1)
