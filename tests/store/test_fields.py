"""The one declaration of a row's values: the schema and every JSON format derive from it."""

from __future__ import annotations

import pyarrow as pa
import pytest

from featstore.store.fields import (
    DIM,
    FIELDS,
    FRAME_FIELDS,
    JSON_FORMATS,
    POSE_COLUMNS,
    SQPNP_POSE_COLUMNS,
)
from featstore.store.format import features_type, store_schema


def test_the_schema_takes_each_value_type_from_its_field() -> None:
    schema = store_schema(7)
    for field in FRAME_FIELDS:
        assert schema.field(field.name).type == field.arrow_type(7), field.name
    assert features_type(7) == pa.list_(pa.float32(), 7)
    assert schema.field("landmarks_2d").type == pa.list_(pa.list_(pa.float32(), 2), 5)
    assert schema.field("rotation_matrix").type == pa.list_(pa.list_(pa.float32(), 3), 3)
    assert schema.field("avg_angle").type == pa.float32()
    # The head pose came last: face000-pose-v1, then featstore-pose-sqpnp-v1 beside it.
    assert schema.names[-6:] == [*POSE_COLUMNS, *SQPNP_POSE_COLUMNS]
    assert schema.field("sqpnp_rotation_matrix").type == schema.field("rotation_matrix").type


def test_the_stable_pose_is_in_no_trainer_json() -> None:
    for name in SQPNP_POSE_COLUMNS:
        assert not FIELDS[name].keys, name


def test_shape_for_puts_the_dim_in() -> None:
    assert FIELDS["features"].shape == (DIM,)
    assert FIELDS["features"].shape_for(384) == (384,)
    assert FIELDS["box"].shape_for(384) == (4,)
    assert FIELDS["det_score"].shape_for(384) == ()


def test_every_format_a_field_names_is_declared() -> None:
    for field in FRAME_FIELDS:
        assert set(field.keys) <= set(JSON_FORMATS), field.name


@pytest.mark.parametrize(
    ("name", "face", "frame"),
    [
        (
            "new",
            ["face_features", "face_landmarks_2d", "face_landmarks_3d", "face_box"],
            ["features", "landmarks_2d", "landmarks_3d", "box", "spherical_angles", "avg_angle"],
        ),
        (
            "3d",
            [
                "face_features",
                "face_landmarks_2d",
                "face_landmarks_3d",
                "face_box",
                "face_euler_angles",
                "face_rotation_matrix",
            ],
            ["features", "landmarks_2d", "landmarks_3d", "box", "euler_angles", "rotation_matrix"],
        ),
        ("old", [], []),
    ],
)
def test_each_format_keys_its_values_as_docs_formats_md(
    name: str, face: list[str], frame: list[str]
) -> None:
    json_format = JSON_FORMATS[name]
    assert list(json_format.face_keys()) == face
    assert list(json_format.frame_keys()) == frame


def test_the_3d_landmarks_are_the_posed_mean_face() -> None:
    assert JSON_FORMATS["3d"].frame_keys()["landmarks_3d"].name == "pose_landmarks_3d"
    assert JSON_FORMATS["3d"].face_keys()["face_landmarks_3d"].name == "pose_landmarks_3d"
    assert JSON_FORMATS["new"].frame_keys()["landmarks_3d"].name == "landmarks_3d"
