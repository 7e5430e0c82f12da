"""The values a row carries for its image, declared once: name, shape, JSON key per format.

    FrameField("box", (4,), {"new": JsonKey("box", "face_box"), "3d": JsonKey("box", "face_box")})

Each `FrameField` is a float32 store column (a fixed-size list of `shape`, a number for
`()`, the model's feature dim for `DIM`) and the keys each trainer JSON format
(docs/formats.md) gives it: on a frame object of `video_data`, and on the identity object
for its frontal image. Everything else derives its own view from here: the store's schema
(`featstore.store.format`), the JSON writer, readers and validator
(`featstore.trainer_json`), the Dataset's sample fields (`featstore.dataset.cache`).

To add a value, add a `FrameField` (and its column to `store_schema`); to add a format,
add a `JsonFormat` and its key to each field it holds. Fields are listed in the order the
JSON formats write their keys; the store's column order is `store_schema`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa

DIM = -1  # in a shape: the model's feature dim (as numpy's reshape reads -1)


@dataclass(frozen=True)
class JsonKey:
    """How one JSON format names a field."""

    frame: str  # the key in each frame object of video_data
    face: str | None = None  # the key on the identity object for its frontal image
    # The seed's 3D file writes the frontal image's pose after the counts.
    face_at_end: bool = False


@dataclass(frozen=True)
class FrameField:
    """A float32 value of a row (frontal image or frame): its column, shape and JSON keys."""

    name: str  # the store column; also IdentityValues' attribute
    shape: tuple[int, ...]  # one row's value: () a number, (DIM,) the features
    keys: Mapping[str, JsonKey]  # per JSON format that holds it

    def shape_for(self, dim: int) -> tuple[int, ...]:
        """`shape` with the model's `dim` in place of DIM."""
        return tuple(dim if size == DIM else size for size in self.shape)

    def arrow_type(self, dim: int) -> pa.DataType:
        """The column's type in rows built in memory (nested fixed-size lists)."""
        dtype = pa.float32()
        for size in reversed(self.shape_for(dim)):
            dtype = pa.list_(dtype, size)
        return dtype


FRAME_FIELDS: tuple[FrameField, ...] = (
    FrameField(
        "features",
        (DIM,),
        {"new": JsonKey("features", "face_features"), "3d": JsonKey("features", "face_features")},
    ),
    FrameField(
        "landmarks_2d",
        (5, 2),
        {
            "new": JsonKey("landmarks_2d", "face_landmarks_2d"),
            "3d": JsonKey("landmarks_2d", "face_landmarks_2d"),
        },
    ),
    # The pseudo-3D landmarks; the 3D format's `landmarks_3d` are the posed mean face below.
    FrameField("landmarks_3d", (5, 3), {"new": JsonKey("landmarks_3d", "face_landmarks_3d")}),
    FrameField("pose_landmarks_3d", (5, 3), {"3d": JsonKey("landmarks_3d", "face_landmarks_3d")}),
    FrameField("box", (4,), {"new": JsonKey("box", "face_box"), "3d": JsonKey("box", "face_box")}),
    FrameField("det_score", (), {}),  # not in the trainer's JSON
    FrameField("spherical_angles", (5,), {"new": JsonKey("spherical_angles")}),
    FrameField("avg_angle", (), {"new": JsonKey("avg_angle")}),
    # The head pose face000-pose-v1 (docs/formats.md), with pose_landmarks_3d.
    FrameField("euler_angles", (3,), {"3d": JsonKey("euler_angles", "face_euler_angles", True)}),
    FrameField(
        "rotation_matrix",
        (3, 3),
        {"3d": JsonKey("rotation_matrix", "face_rotation_matrix", True)},
    ),
    # The head pose featstore-pose-sqpnp-v1 (docs/pose.md): face000-pose-v1 solved stably,
    # beside it; in no trainer JSON (the 3D format is the seed's, with face000-pose-v1).
    FrameField("sqpnp_euler_angles", (3,), {}),
    FrameField("sqpnp_rotation_matrix", (3, 3), {}),
    FrameField("sqpnp_pose_landmarks_3d", (5, 3), {}),
)
FIELDS: dict[str, FrameField] = {f.name: f for f in FRAME_FIELDS}
# The head pose face000-pose-v1's columns (docs/formats.md): null where a row has no face
# or no pose; stores made before featstore computed it lack them.
POSE_COLUMNS: tuple[str, ...] = ("euler_angles", "rotation_matrix", "pose_landmarks_3d")
# The head pose featstore-pose-sqpnp-v1's columns, in POSE_COLUMNS' order: null where a row
# has no face or no pose; tables made before featstore computed it lack them, or hold
# nulls in rows written before (`featstore derive` fills them).
SQPNP_POSE_COLUMNS: tuple[str, ...] = (
    "sqpnp_euler_angles",
    "sqpnp_rotation_matrix",
    "sqpnp_pose_landmarks_3d",
)


@dataclass(frozen=True)
class JsonFormat:
    """A trainer JSON format (docs/formats.md): where an identity keeps its paths and values.

    The frontal image's path is `face_image_path`; the frames are the list `frames`,
    of objects with the path under `frame_path`, or of bare paths when it is None.
    """

    name: str
    frames: str
    frame_path: str | None
    face_path: str = "face_image_path"

    def fields(self) -> tuple[tuple[FrameField, JsonKey], ...]:
        """The values the format holds, with their keys, in the order it writes them."""
        return tuple((f, f.keys[self.name]) for f in FRAME_FIELDS if self.name in f.keys)

    def face_keys(self) -> dict[str, FrameField]:
        """Key on the identity object -> field, for the frontal image's values."""
        return {key.face: f for f, key in self.fields() if key.face is not None}

    def frame_keys(self) -> dict[str, FrameField]:
        """Key on a frame object -> field."""
        return {key.frame: f for f, key in self.fields()}


JSON_FORMATS: dict[str, JsonFormat] = {
    "new": JsonFormat("new", frames="video_data", frame_path="image_path"),
    "3d": JsonFormat("3d", frames="video_data", frame_path="image_path"),
    "old": JsonFormat("old", frames="video_images", frame_path=None),
}
