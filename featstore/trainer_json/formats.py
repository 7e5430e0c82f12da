"""The trainer JSON's formats (docs/formats.md): the one detector, and an identity's object.

    {"<identity>": {"face_image_path", <the frontal image's values>,
                    "video_data": [{"image_path", <the frame's values>}, ...],
                    "total_video_images", "valid_video_images", "feature_dim", "dinov2_model",
                    <the 3D format's frontal pose>}}
    old format:   {"<identity>": {"face_image_path", "video_images": [<path>, ...]}}

The values and their keys in each format are declared once, in `featstore.store.fields`.

The seed's 3D file (`valid_images_3d.json`) is the new format with the pose
(`face000-pose-v1`) in place of the spherical angles: frames have no `spherical_angles` /
`avg_angle`, and `landmarks_3d` holds the mean face posed in camera coordinates
(`pose_landmarks_3d`), not the pseudo-3D points; its keys are in the order the seed's
`filter_valid_images_3d.py` writes them. An identity is kept in it when its frontal image
has a face, a pose and features and at least one frame has all three; a frame without a
pose is left out like a frame without a face.

`export`, `importer` (through `identity_rows`), `validate` and the Dataset all tell the
formats apart with `identity_format`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal

from featstore.store.fields import JSON_FORMATS, JsonFormat

IdentityFormat = Literal["new", "3d", "old", "unknown"]
_NEW, _3D, _OLD = JSON_FORMATS["new"], JSON_FORMATS["3d"], JSON_FORMATS["old"]
# Fields that mark an identity as new-format (or 3D): its values, frames and counts.
NEW_KEYS: tuple[str, ...] = (*_NEW.face_keys(), _NEW.frames, "feature_dim", "dinov2_model")
# Keys only the 3D format has: any of them makes an identity a 3D one.
FACE_POSE_KEYS = tuple(key for key in _3D.face_keys() if key not in _NEW.face_keys())
FRAME_POSE_KEYS = tuple(key for key in _3D.frame_keys() if key not in _NEW.frame_keys())


def identity_format(identity: dict[str, Any]) -> IdentityFormat:
    """The format one identity's object is in, from its keys.

    New when it carries any of the new format's fields, 3D when it (or its first frame)
    also carries the pose; old with `video_images`; else unknown.
    """
    if any(key in identity for key in NEW_KEYS):
        return "3d" if _has_pose(identity) else "new"
    return "old" if _OLD.frames in identity else "unknown"


def _has_pose(identity: dict[str, Any]) -> bool:
    if any(key in identity for key in FACE_POSE_KEYS):
        return True
    video = identity.get(_3D.frames)
    first = video[0] if isinstance(video, list) and video else None
    return isinstance(first, dict) and any(key in first for key in FRAME_POSE_KEYS)


def identity_object(
    json_format: JsonFormat,
    face: dict[str, Any],
    video: list[dict[str, Any]],
    total: int,
    *,
    model: str,
    dim: int,
    rebase: Callable[[str], str],
) -> dict[str, Any]:
    """One identity's JSON object from its store rows, keys in the format's order."""
    face_path = rebase(face["image_path"])
    if json_format.frame_path is None:  # the old format: paths only
        return {
            json_format.face_path: face_path,
            json_format.frames: [rebase(frame["image_path"]) for frame in video],
        }
    face_first, frame_keys, face_last = _layout(json_format)
    obj: dict[str, Any] = {json_format.face_path: face_path}
    obj.update((key, face[column]) for key, column in face_first)
    obj[json_format.frames] = [
        {
            json_format.frame_path: rebase(frame["image_path"]),
            **{key: frame[column] for key, column in frame_keys},
        }
        for frame in video
    ]
    obj["total_video_images"] = total
    obj["valid_video_images"] = len(video)
    obj["feature_dim"] = dim
    obj["dinov2_model"] = model
    obj.update((key, face[column]) for key, column in face_last)
    return obj


_Pairs = tuple[tuple[str, str], ...]  # (JSON key, store column)


@functools.cache
def _layout(json_format: JsonFormat) -> tuple[_Pairs, _Pairs, _Pairs]:
    """(frontal keys before video_data, frame keys, frontal keys after the counts)."""
    first: list[tuple[str, str]] = []
    last: list[tuple[str, str]] = []
    for field, key in json_format.fields():
        if key.face is not None:
            (last if key.face_at_end else first).append((key.face, field.name))
    frame = tuple((key.frame, field.name) for field, key in json_format.fields())
    return tuple(first), frame, tuple(last)
