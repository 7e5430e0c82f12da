"""Pseudo-3D landmarks and spherical angles: the reference math of docs/formats.md.

Everything is computed in float64 and returned as float64; the store casts to float32.
The definition is versioned as `ANGLE_DEFINITION`; change the math, change the name.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

ANGLE_DEFINITION = "face000-v1"

Float64Array = NDArray[np.float64]


def landmarks_3d(box: NDArray[np.floating], landmarks_2d: NDArray[np.floating]) -> Float64Array:
    """Lift five 2D keypoints onto a unit hemisphere over their face box.

    Args:
        box: `[x1, y1, x2, y2]`.
        landmarks_2d: `[5, 2]` pixel coordinates.

    Returns:
        `[5, 3]` points `(sin θ cos φ, sin θ sin φ, cos θ)`.
    """
    x1, y1, x2, y2 = np.asarray(box, dtype=np.float64)
    points = np.asarray(landmarks_2d, dtype=np.float64)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    w, h = x2 - x1, y2 - y1
    with np.errstate(divide="ignore", invalid="ignore"):
        xn = (points[:, 0] - cx) / (w / 2.0)
        yn = (points[:, 1] - cy) / (h / 2.0)
    r = np.minimum(np.sqrt(xn**2 + yn**2), 1.0)
    theta = np.arccos(1.0 - r)
    # The seed used atan2 only where xn != 0 and 0 elsewhere; kept for compatibility.
    phi = np.where(xn != 0, np.arctan2(yn, xn), 0.0)
    return np.stack(
        [np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], axis=-1
    )


def spherical_angles(
    face_3d: NDArray[np.floating],
    face_2d: NDArray[np.floating],
    frame_3d: NDArray[np.floating],
    frame_2d: NDArray[np.floating],
) -> Float64Array:
    """Signed angle in degrees between each frame keypoint and its frontal counterpart.

    The sign says whether the keypoint moved up (positive) or down (negative) in the
    image; a keypoint at the same height counts as positive unless the angle is below
    0.1 degrees, which is treated as no movement.

    Returns:
        `[5]` angles in degrees.
    """
    u = np.asarray(face_3d, dtype=np.float64)
    v = np.asarray(frame_3d, dtype=np.float64)
    u = u / (np.linalg.norm(u, axis=1, keepdims=True) + 1e-8)
    v = v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-8)
    magnitude = np.degrees(np.arccos(np.clip(np.sum(u * v, axis=1), -1.0, 1.0)))
    dy = np.asarray(frame_2d, dtype=np.float64)[:, 1] - np.asarray(face_2d, dtype=np.float64)[:, 1]
    level = np.where(magnitude > 0.1, magnitude, 0.0)
    return np.where(dy < 0, magnitude, np.where(dy > 0, -magnitude, level))


def average_angle(angles: NDArray[np.floating]) -> float:
    """Mean of the five spherical angles (the seed's `avg_angle`)."""
    return float(np.mean(np.asarray(angles, dtype=np.float64)))
