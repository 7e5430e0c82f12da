"""The trainer JSON's formats: one detector, and each format's identity object."""

from __future__ import annotations

import dataclasses
from typing import Any

from featstore.store.fields import FRAME_FIELDS, JSON_FORMATS
from featstore.trainer_json.formats import identity_object
from featstore.trainer_json.identity_values import IdentityValues


def _row(image: str) -> dict[str, Any]:
    """A store row holding every value, each a distinct marker."""
    return {"image_path": image, **{f.name: f"{image}:{f.name}" for f in FRAME_FIELDS}}


def _object(name: str) -> dict[str, Any]:
    face, frames = _row("face.jpg"), [_row("f0.jpg"), _row("f1.jpg")]
    return identity_object(
        JSON_FORMATS[name], face, frames, 5, model="dinov2_vits14", dim=384, rebase=str.upper
    )


def test_new_format_object_keys_values_and_order() -> None:
    obj = _object("new")
    assert list(obj) == [
        "face_image_path",
        "face_features",
        "face_landmarks_2d",
        "face_landmarks_3d",
        "face_box",
        "video_data",
        "total_video_images",
        "valid_video_images",
        "feature_dim",
        "dinov2_model",
    ]
    assert obj["face_image_path"] == "FACE.JPG"
    assert obj["face_landmarks_3d"] == "face.jpg:landmarks_3d"
    assert obj["video_data"][1] == {
        "image_path": "F1.JPG",
        "features": "f1.jpg:features",
        "landmarks_2d": "f1.jpg:landmarks_2d",
        "landmarks_3d": "f1.jpg:landmarks_3d",
        "box": "f1.jpg:box",
        "spherical_angles": "f1.jpg:spherical_angles",
        "avg_angle": "f1.jpg:avg_angle",
    }
    assert [obj[k] for k in list(obj)[-4:]] == [5, 2, 384, "dinov2_vits14"]


def test_3d_object_is_the_seeds_layout() -> None:
    obj = _object("3d")
    assert list(obj) == [
        "face_image_path",
        "face_features",
        "face_landmarks_2d",
        "face_landmarks_3d",
        "face_box",
        "video_data",
        "total_video_images",
        "valid_video_images",
        "feature_dim",
        "dinov2_model",
        "face_euler_angles",
        "face_rotation_matrix",
    ]
    assert obj["face_landmarks_3d"] == "face.jpg:pose_landmarks_3d"
    assert obj["face_rotation_matrix"] == "face.jpg:rotation_matrix"
    assert list(obj["video_data"][0]) == [
        "image_path",
        "features",
        "landmarks_2d",
        "landmarks_3d",
        "box",
        "euler_angles",
        "rotation_matrix",
    ]
    assert obj["video_data"][0]["landmarks_3d"] == "f0.jpg:pose_landmarks_3d"


def test_old_format_object_is_paths_only() -> None:
    assert _object("old") == {"face_image_path": "FACE.JPG", "video_images": ["F0.JPG", "F1.JPG"]}


def test_identity_values_has_an_attribute_for_every_value_a_json_format_holds() -> None:
    attributes = {f.name for f in dataclasses.fields(IdentityValues)}
    for json_format in JSON_FORMATS.values():
        assert {f.name for f, _ in json_format.fields()} <= attributes, json_format.name
