"""Head pose from five keypoints: `face000-pose-v1` (docs/formats.md), the seed's later
trainer's pose, and `featstore-pose-sqpnp-v1` beside it, the same pose solved stably
(docs/pose.md).

    pose = solve_pose(landmarks_2d, width, height)          # face000-pose-v1
    pose = solve_pose_sqpnp(landmarks_2d, width, height)    # featstore-pose-sqpnp-v1
    if isinstance(pose, HeadPose): pose.euler_angles, pose.rotation_matrix, pose.landmarks_3d

The pose is solved by OpenCV's EPnP between the five stored keypoints and a 5-point mean
face (millimetres), with a pinhole camera of focal length = image width and the principal
point at the image centre. The Euler angles use the seed's names, which are not the usual
ones: for an upright frontal face its "roll" is near ±180° and a left-right turn shows in
its "pitch". EPnP on five points is ill-conditioned, so the inputs are passed to OpenCV in
float32 exactly as the seed passed them (InsightFace's float32 keypoints, a float32 model and
camera); everything after the solver is float64. Change the math, change the name.

EPnP's answer jumps by tens of degrees under 0.1 px of keypoint noise for about one face in
five whose keypoints do not fit the mean face exactly, as real faces do not (docs/pose.md,
bench/bench_pose.py). `featstore-pose-sqpnp-v1` keeps everything else (mean face, camera,
angle names, posed mean face) and replaces the solver, in float64: OpenCV's SQPnP (the
global minimum over all rotations, no guess needed), refined by Levenberg-Marquardt on the
reprojection error. Under the same noise its angles move by about a tenth of a degree. It
is stored beside face000-pose-v1, never instead of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from featstore.store.fields import POSE_COLUMNS, SQPNP_POSE_COLUMNS

POSE_DEFINITION = "face000-pose-v1"
SQPNP_POSE_DEFINITION = "featstore-pose-sqpnp-v1"

# The seed's mean face (train_transformer3D/utils_3d.py): left eye, right eye, nose tip
# (the origin), left and right mouth corner, in millimetres, y up.
MEAN_FACE_3D = np.array(
    [[-36, 13, -42], [36, 13, -42], [0, 0, 0], [-25, -30, -42], [25, -30, -42]],
    dtype=np.float32,
)
# Keypoints closer than this (pixels) to one point or one line leave EPnP without a
# solution: it then returns an arbitrary rotation, not an error.
_DEGENERATE_PX = 1e-3


@dataclass(frozen=True)
class HeadPose:
    """A solved pose, float64.

    Attributes:
        euler_angles: `[3]` degrees, the seed's (yaw, pitch, roll), sic.
        rotation_matrix: `[3, 3]` R, model to camera coordinates.
        landmarks_3d: `[5, 3]` the mean face posed in camera coordinates, `(R @ M.T + t).T`.
    """

    euler_angles: NDArray[np.float64]
    rotation_matrix: NDArray[np.float64]
    landmarks_3d: NDArray[np.float64]


@dataclass(frozen=True)
class NoPose:
    """Why an image with a face has no pose (for the log and the summary)."""

    reason: str


def solve_pose(
    landmarks_2d: NDArray[np.floating], width: int | None, height: int | None
) -> HeadPose | NoPose:
    """`face000-pose-v1` of one face: the seed's PnP pose, or why there is none.

    Args:
        landmarks_2d: `[5, 2]` keypoints in pixels, as stored (float32; other dtypes are
            rounded to float32 first, which is what the store holds).
        width: the image's width in pixels (the focal length and twice the centre's x).
        height: the image's height in pixels.

    Returns:
        A `HeadPose` with finite values, or a `NoPose` with the reason (degenerate
        keypoints, an image without size, a solver error or failure). Never raises for
        bad data and never returns NaN.
    """
    import cv2

    points = check_keypoints(landmarks_2d, width, height)
    if isinstance(points, NoPose):
        return points
    assert width is not None and height is not None  # checked above
    camera = np.array([[width, 0, width / 2], [0, width, height / 2], [0, 0, 1]], dtype=np.float32)
    distortion = np.zeros((4, 1), dtype=np.float32)
    try:
        ok, rvec, tvec = cv2.solvePnP(
            MEAN_FACE_3D, points, camera, distortion, flags=cv2.SOLVEPNP_EPNP
        )
    except cv2.error as exc:
        return NoPose(f"solvePnP (EPnP) failed: {str(exc).strip().splitlines()[-1]}")
    if not ok:
        return NoPose("solvePnP (EPnP) found no solution")
    return head_pose(rvec, tvec, "EPnP")


def solve_pose_sqpnp(
    landmarks_2d: NDArray[np.floating], width: int | None, height: int | None
) -> HeadPose | NoPose:
    """`featstore-pose-sqpnp-v1` of one face: face000-pose-v1's model, camera and angles,
    solved in float64 (the stored float32 keypoints, widened exactly) by SQPnP, then
    refined by Levenberg-Marquardt on the reprojection error.

    SQPnP finds the global minimum of its (object-space) error over all rotations, so the
    start does not depend on EPnP's guess; LM then minimises the error in pixels, whose
    minimum moves least with the keypoints when they fit the mean face badly (docs/pose.md).
    Arguments and result as `solve_pose`'s.
    """
    import cv2

    points = check_keypoints(landmarks_2d, width, height)
    if isinstance(points, NoPose):
        return points
    assert width is not None and height is not None  # checked above
    model, pixels = MEAN_FACE_3D.astype(np.float64), points.astype(np.float64)
    camera = np.array([[width, 0, width / 2], [0, width, height / 2], [0, 0, 1]], dtype=np.float64)
    distortion = np.zeros((4, 1))
    try:
        ok, rvec, tvec = cv2.solvePnP(model, pixels, camera, distortion, flags=cv2.SOLVEPNP_SQPNP)
        if not ok:
            return NoPose("solvePnP (SQPnP) found no solution")
        rvec, tvec = cv2.solvePnPRefineLM(model, pixels, camera, distortion, rvec, tvec)
    except cv2.error as exc:
        return NoPose(f"solvePnP (SQPnP + LM) failed: {str(exc).strip().splitlines()[-1]}")
    return head_pose(rvec, tvec, "SQPnP + LM")


def check_keypoints(
    landmarks_2d: NDArray[np.floating], width: int | None, height: int | None
) -> NDArray[np.float32] | NoPose:
    """The keypoints as float32 `[5, 2]` when a pose can be solved from them, else why not."""
    points = np.ascontiguousarray(landmarks_2d, dtype=np.float32)
    if points.shape != (5, 2):
        return NoPose(f"expected [5, 2] keypoints, got shape {list(points.shape)}")
    if not np.isfinite(points).all():
        return NoPose("non-finite keypoints")
    if not width or not height or width <= 0 or height <= 0:
        return NoPose(f"image size unknown or zero ({width}x{height})")
    spread = np.linalg.svd(points.astype(np.float64) - points.mean(axis=0), compute_uv=False)
    if spread[0] < _DEGENERATE_PX:
        return NoPose("degenerate keypoints: all five at one point")
    if spread[1] < _DEGENERATE_PX:
        return NoPose("degenerate keypoints: all five on one line")
    return points


def head_pose(rvec: ArrayLike, tvec: ArrayLike, solver: str) -> HeadPose | NoPose:
    """The pose of a solver's rotation and translation vectors, in float64 (or why none)."""
    import cv2

    rvec = np.asarray(rvec, dtype=np.float64).reshape(3, 1)
    tvec = np.asarray(tvec, dtype=np.float64).reshape(3, 1)
    if not (np.isfinite(rvec).all() and np.isfinite(tvec).all()):
        return NoPose(f"solvePnP ({solver}) returned non-finite values")
    rotation = cv2.Rodrigues(rvec)[0].astype(np.float64)
    euler = euler_angles(rotation)
    # The seed's expression as written (float64 R @ the float32 model's transpose): another
    # layout or an explicit cast may take another matmul path and move the last bit.
    landmarks_3d = (rotation @ MEAN_FACE_3D.T + tvec).T
    if not (np.isfinite(euler).all() and np.isfinite(landmarks_3d).all()):
        return NoPose("the pose has non-finite values")
    return HeadPose(euler, rotation, landmarks_3d)


def euler_angles(rotation: NDArray[np.floating]) -> NDArray[np.float64]:
    """The seed's (yaw, pitch, roll) in degrees of a rotation matrix (names sic).

    With Python floats and the `math` module, as the seed's `estimate_pose_from_landmarks`
    computes them: `numpy.arctan2` differs from `math.atan2` in the last bit for ~8% of
    inputs, and the npy training directory (docs/formats.md) holds these float64 values
    byte for byte.
    """
    r = np.asarray(rotation, dtype=np.float64).tolist()
    sy = math.sqrt(r[0][0] * r[0][0] + r[1][0] * r[1][0])
    if sy >= 1e-6:
        yaw = math.atan2(r[1][0], r[0][0])
        pitch = math.atan2(-r[2][0], sy)
        roll = math.atan2(r[2][1], r[2][2])
    else:
        yaw = math.atan2(-r[0][1], r[1][1])
        pitch = math.atan2(-r[2][0], sy)
        roll = 0.0
    return np.array([math.degrees(yaw), math.degrees(pitch), math.degrees(roll)])


Solver = Callable[[NDArray[np.floating], int | None, int | None], HeadPose | NoPose]


@dataclass(frozen=True)
class PoseDefinition:
    """A head pose definition: its name, where the provenance records it, its columns.

    Attributes:
        name: recorded in a model's provenance under `provenance_key` when its rows hold
            this pose (extraction writes it; `featstore derive` adds it to older tables).
        columns: the store's columns (`featstore.store.fields`): Euler angles `[3]`,
            rotation matrix `[3, 3]`, posed mean face `[5, 3]`.
        solve: the pose of one face (`solve_pose`'s arguments and result).
    """

    name: str
    provenance_key: str
    columns: tuple[str, ...]
    solve: Solver


FACE000_POSE = PoseDefinition(POSE_DEFINITION, "pose_definition", POSE_COLUMNS, solve_pose)
SQPNP_POSE = PoseDefinition(
    SQPNP_POSE_DEFINITION, "sqpnp_pose_definition", SQPNP_POSE_COLUMNS, solve_pose_sqpnp
)
POSE_DEFINITIONS: tuple[PoseDefinition, ...] = (FACE000_POSE, SQPNP_POSE)
