"""The seed's 3D trainer JSON (`valid_images_3d.json`, docs/formats.md): its fields and its objects.

    {"<identity>": {
       "face_image_path", "face_features", "face_landmarks_2d",
       "face_landmarks_3d" (= pose_landmarks_3d), "face_box",
       "video_data": [{"image_path", "features", "landmarks_2d",
                       "landmarks_3d" (= pose_landmarks_3d), "box",
                       "euler_angles", "rotation_matrix"}, ...],
       "total_video_images", "valid_video_images", "feature_dim", "dinov2_model",
       "face_euler_angles", "face_rotation_matrix"}}

Keys in the order the seed's `filter_valid_images_3d.py` writes them. It is the new format of
docs/formats.md with the pose (`face000-pose-v1`) in place of the spherical angles: frames have no
`spherical_angles` / `avg_angle`, and `landmarks_3d` holds the mean face posed in camera
coordinates, not the pseudo-3D points. An identity is kept when its frontal image has a
face, a pose and features and at least one frame has all three; a frame without a pose is
left out like a frame without a face.

This module is what `export`, `importer` (through `identity_rows`), `validate` and the
Dataset share about the format; it imports nothing of featstore.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Store columns of the pose, with their shapes (docs/formats.md).
POSE_COLUMNS: dict[str, tuple[int, ...]] = {
    "euler_angles": (3,),
    "rotation_matrix": (3, 3),
    "pose_landmarks_3d": (5, 3),
}
# The JSON's numeric fields: the identity's (frontal image) and each frame's.
FACE_SHAPES_3D: dict[str, tuple[int, ...]] = {
    "face_landmarks_2d": (5, 2),
    "face_landmarks_3d": (5, 3),
    "face_box": (4,),
    "face_euler_angles": (3,),
    "face_rotation_matrix": (3, 3),
}
FRAME_SHAPES_3D: dict[str, tuple[int, ...]] = {
    "landmarks_2d": (5, 2),
    "landmarks_3d": (5, 3),
    "box": (4,),
    "euler_angles": (3,),
    "rotation_matrix": (3, 3),
}
# Fields only the 3D format has: any of them makes an identity a 3D one.
FACE_POSE_KEYS = ("face_euler_angles", "face_rotation_matrix")
FRAME_POSE_KEYS = ("euler_angles", "rotation_matrix")


def is_3d(identity: dict[str, Any]) -> bool:
    """True when a new-format identity carries the pose (itself or its first frame)."""
    if any(key in identity for key in FACE_POSE_KEYS):
        return True
    video = identity.get("video_data")
    first = video[0] if isinstance(video, list) and video else None
    return isinstance(first, dict) and any(key in first for key in FRAME_POSE_KEYS)


def identity_object_3d(
    face: dict[str, Any],
    video: list[dict[str, Any]],
    total: int,
    *,
    model: str,
    dim: int,
    rebase: Callable[[str], str],
) -> dict[str, Any]:
    """One identity's 3D JSON object from its store rows (each with its pose), keys as the seed."""
    return {
        "face_image_path": rebase(face["image_path"]),
        "face_features": face["features"],
        "face_landmarks_2d": face["landmarks_2d"],
        "face_landmarks_3d": face["pose_landmarks_3d"],
        "face_box": face["box"],
        "video_data": [
            {
                "image_path": rebase(frame["image_path"]),
                "features": frame["features"],
                "landmarks_2d": frame["landmarks_2d"],
                "landmarks_3d": frame["pose_landmarks_3d"],
                "box": frame["box"],
                "euler_angles": frame["euler_angles"],
                "rotation_matrix": frame["rotation_matrix"],
            }
            for frame in video
        ],
        "total_video_images": total,
        "valid_video_images": len(video),
        "feature_dim": dim,
        "dinov2_model": model,
        "face_euler_angles": face["euler_angles"],
        "face_rotation_matrix": face["rotation_matrix"],
    }
