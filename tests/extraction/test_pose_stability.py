"""featstore-pose-sqpnp-v1 beside face000-pose-v1 (docs/pose.md): the same angles where the
keypoints fit the mean face, far stabler where they do not, the same handling of bad input.
Seeded and deterministic: no timing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from featstore.extraction.pose import (
    MEAN_FACE_3D,
    POSE_DEFINITIONS,
    SQPNP_POSE,
    HeadPose,
    NoPose,
    euler_angles,
    solve_pose,
    solve_pose_sqpnp,
)
from featstore.store.fields import FIELDS, POSE_COLUMNS, SQPNP_POSE_COLUMNS
from featstore.synthetic.pose_trials import (
    Stability,
    angle_changes,
    angle_gap,
    face_grid,
    posed_face,
    rotation,
)

W, H = 1440, 1080


def _project_mean_face(r: np.ndarray, distance: float = 900.0) -> np.ndarray:
    posed = r @ MEAN_FACE_3D.T.astype(np.float64) + np.array([[30.0], [-20.0], [distance]])
    return (posed[:2] / posed[2] * W + np.array([[W / 2], [H / 2]])).T.astype(np.float32)


def test_under_a_tenth_of_a_pixel_the_stable_pose_moves_far_less_than_face000s() -> None:
    # Keypoints that fit the mean face as badly as InsightFace's on real faces do.
    faces = face_grid(
        face_widths=(200,), yaws=(-30.0, 0.0, 30.0), pitches=(0.0, 15.0), rolls=(0.0, 10.0), seed=3
    )
    base = Stability.of(angle_changes(solve_pose, faces, noise_px=0.1, trials=10, seed=4))
    stable = Stability.of(angle_changes(solve_pose_sqpnp, faces, noise_px=0.1, trials=10, seed=4))
    assert base.trials == stable.trials == 120 and base.failures == stable.failures == 0
    # face000-pose-v1 (EPnP): some angle jumps by more than 5 degrees in many trials.
    assert base.jumps > 0.1 and max(base.p95) > 5.0
    # featstore-pose-sqpnp-v1: never; a few hundredths of a degree, at worst a fraction.
    assert stable.jumps == 0 and max(stable.p95) < 0.5 and max(stable.median) < 0.2
    assert max(stable.p95) < 0.05 * max(base.p95)


@pytest.mark.parametrize("angles", [(0.0, 0.0, 0.0), (25.0, -10.0, 5.0), (-35.0, 15.0, -12.0)])
def test_where_the_keypoints_fit_the_mean_face_both_give_the_true_angles(
    angles: tuple[float, float, float],
) -> None:
    r = rotation(*angles)
    kps = _project_mean_face(r)
    truth = euler_angles(r)  # the seed's names, as both definitions give them
    for definition in POSE_DEFINITIONS:
        pose = definition.solve(kps, W, H)
        assert isinstance(pose, HeadPose), (definition.name, pose)
        assert angle_gap(pose.euler_angles, truth).max() < 0.05, definition.name
        np.testing.assert_allclose(pose.rotation_matrix, r, atol=1e-3)
    stable = solve_pose_sqpnp(kps, W, H)
    assert isinstance(stable, HeadPose)
    eyes = stable.landmarks_3d[1] - stable.landmarks_3d[0]  # the posed mean face, in mm
    assert np.linalg.norm(eyes) == pytest.approx(72.0, abs=1e-6)


def test_the_stable_pose_is_deterministic_and_solves_the_stored_float32_keypoints() -> None:
    face = posed_face((20.0, 5.0, -3.0), 150, np.random.default_rng(9))
    a = solve_pose_sqpnp(face.keypoints, face.width, face.height)
    wide = face.keypoints.astype(np.float64) + 1e-9  # rounds back to the same float32
    b = solve_pose_sqpnp(wide, face.width, face.height)
    assert isinstance(a, HeadPose) and isinstance(b, HeadPose)
    assert a.euler_angles.tobytes() == b.euler_angles.tobytes()


@pytest.mark.parametrize(
    ("kps", "width", "height", "reason"),
    [
        (np.full((5, 2), 100.0), W, H, "all five at one point"),
        ([[0, 0], [10, 10], [20, 20], [30, 30], [40, 40]], W, H, "all five on one line"),
        (np.zeros((5, 2)) + [[1, 2]], None, None, "image size unknown or zero (NonexNone)"),
        (_project_mean_face(np.eye(3)), 0, H, "image size unknown or zero (0x1080)"),
        (np.full((5, 2), np.inf), W, H, "non-finite keypoints"),
        (np.zeros((3, 2)), W, H, "expected [5, 2] keypoints, got shape [3, 2]"),
    ],
)
def test_bad_input_gives_no_stable_pose_for_the_same_reasons(
    kps: object, width: int | None, height: int | None, reason: str
) -> None:
    points = np.asarray(kps, dtype=np.float32)
    stable, base = solve_pose_sqpnp(points, width, height), solve_pose(points, width, height)
    assert isinstance(stable, NoPose) and isinstance(base, NoPose)
    assert reason in stable.reason and stable.reason == base.reason


def test_a_solver_error_gives_no_stable_pose(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise cv2.error("OpenCV(5.x) solvepnp.cpp:1 error: (-215:Assertion failed) npoints")

    monkeypatch.setattr(cv2, "solvePnPRefineLM", broken)
    pose = solve_pose_sqpnp(_project_mean_face(np.diag([1.0, -1.0, -1.0])), W, H)
    assert isinstance(pose, NoPose)
    assert pose.reason.startswith("solvePnP (SQPnP + LM) failed")


def test_the_definitions_name_their_columns_once() -> None:
    assert [d.columns for d in POSE_DEFINITIONS] == [POSE_COLUMNS, SQPNP_POSE_COLUMNS]
    assert SQPNP_POSE.name == "featstore-pose-sqpnp-v1"
    for base, stable in zip(POSE_COLUMNS, SQPNP_POSE_COLUMNS, strict=True):
        assert FIELDS[stable].shape == FIELDS[base].shape


def test_the_trial_faces_look_like_insightfaces_not_like_the_mean_face() -> None:
    face = posed_face((0.0, 0.0, 0.0), 400, np.random.default_rng(0)).keypoints
    eyes = float(np.linalg.norm(face[1] - face[0]))
    assert eyes == pytest.approx(200.0, rel=0.05)  # a 400 px face, eyes half as far apart
    mouth_below = float(face[3:].mean(axis=0)[1] - face[:2].mean(axis=0)[1])
    assert mouth_below / eyes == pytest.approx(1.16, abs=0.1)  # the mean face: 43 / 72
