"""face000-pose-v1 (SPEC §7): hand cases, the formula written again here, bad input."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from featstore.extraction.pose import MEAN_FACE_3D, HeadPose, NoPose, euler_angles, solve_pose

W, H = 640, 480
# An upright frontal face: the mean face (y up) seen by a camera whose y points down.
FRONTAL = np.diag([1.0, -1.0, -1.0])
MIRROR = np.diag([-1.0, 1.0, 1.0])
SWAP_SIDES = [1, 0, 2, 4, 3]  # mirrored, the left eye becomes the right one


def project(rotation: np.ndarray, distance: float = 500.0) -> np.ndarray:
    """The mean face posed by `rotation` at `distance` mm, as float32 pixels."""
    posed = rotation @ MEAN_FACE_3D.T.astype(np.float64) + np.array([[0.0], [0.0], [distance]])
    pixels = posed[:2] / posed[2] * W + np.array([[W / 2], [H / 2]])
    return pixels.T.astype(np.float32)


def seed_formula(kps: np.ndarray, w: int, h: int) -> tuple[list[float], np.ndarray, np.ndarray]:
    """SPEC §7 written out again, independently of featstore.extraction.pose."""
    model = np.array(
        [[-36, 13, -42], [36, 13, -42], [0, 0, 0], [-25, -30, -42], [25, -30, -42]], np.float32
    )
    camera = np.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1]], np.float32)
    ok, rvec, tvec = cv2.solvePnP(
        model, kps, camera, np.zeros((4, 1), np.float32), flags=cv2.SOLVEPNP_EPNP
    )
    assert ok
    r = cv2.Rodrigues(rvec)[0]
    sy = math.sqrt(r[0, 0] * r[0, 0] + r[1, 0] * r[1, 0])
    if sy >= 1e-6:
        angles = [
            math.atan2(r[1, 0], r[0, 0]),
            math.atan2(-r[2, 0], sy),
            math.atan2(r[2, 1], r[2, 2]),
        ]
    else:
        angles = [math.atan2(-r[0, 1], r[1, 1]), math.atan2(-r[2, 0], sy), 0.0]
    return [math.degrees(a) for a in angles], r, (r @ model.T + tvec).T


def angle_gap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| in degrees, modulo 360 (the seed's roll jumps between +180 and -180)."""
    return np.abs((np.asarray(a) - np.asarray(b) + 180.0) % 360.0 - 180.0)


def solved(kps: np.ndarray, w: int = W, h: int = H) -> HeadPose:
    pose = solve_pose(kps, w, h)
    assert isinstance(pose, HeadPose), pose
    return pose


def test_frontal_mean_face_gives_the_seeds_values() -> None:
    pose = solved(project(FRONTAL))
    # Upright and frontal: "yaw" 0, "pitch" 0, "roll" ±180 (the seed's names, sic).
    assert angle_gap(pose.euler_angles, [0.0, 0.0, 180.0]).max() < 0.01
    np.testing.assert_allclose(pose.rotation_matrix, FRONTAL, atol=1e-3)
    # The posed mean face keeps its shape: eyes 72 mm apart, the nose in front of them.
    eyes = pose.landmarks_3d[1] - pose.landmarks_3d[0]
    assert eyes[0] == pytest.approx(72.0, abs=0.01)
    assert pose.landmarks_3d[2, 2] < pose.landmarks_3d[0, 2]


@pytest.mark.parametrize("rvec", [(0.2, 0.3, 0.1), (-0.3, 0.1, 0.25), (0.05, -0.4, -0.2)])
def test_a_mirrored_face_flips_the_sign_of_the_seeds_yaw(rvec: tuple[float, ...]) -> None:
    turned = cv2.Rodrigues(np.array(rvec))[0] @ FRONTAL
    kps = project(turned)
    mirrored = project(MIRROR @ turned @ MIRROR)
    # The mirror image of the keypoints, labels swapped (left eye <-> right eye).
    np.testing.assert_allclose(mirrored[:, 0], W - kps[SWAP_SIDES, 0], atol=1e-3)
    a, b = solved(kps).euler_angles, solved(mirrored).euler_angles
    assert abs(a[0]) > 1.0
    assert b[0] == pytest.approx(-a[0], abs=1e-3)
    assert b[1] == pytest.approx(-a[1], abs=1e-3)  # the left-right turn flips too
    assert angle_gap(b[2], a[2]) < 1e-3  # "roll" stays


def test_agrees_with_the_formula_written_independently_on_random_keypoints() -> None:
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(200):
        w, h = int(rng.integers(64, 2000)), int(rng.integers(64, 2000))
        rotation = cv2.Rodrigues(rng.normal(0, 0.4, 3))[0] @ FRONTAL
        kps = project(rotation, distance=float(rng.uniform(300, 3000)))
        kps = kps * np.float32(w / W) + rng.normal(0, 3, (5, 2)).astype(np.float32)
        expected_angles, expected_r, expected_3d = seed_formula(kps, w, h)
        pose = solved(kps, w, h)
        assert angle_gap(pose.euler_angles, expected_angles).max() <= 1e-6
        np.testing.assert_allclose(pose.rotation_matrix, expected_r, rtol=0, atol=1e-12)
        np.testing.assert_allclose(pose.landmarks_3d, expected_3d, rtol=1e-9, atol=1e-9)
        checked += 1
    assert checked == 200


def test_the_stored_float32_keypoints_are_what_is_solved() -> None:
    kps = project(cv2.Rodrigues(np.array([0.1, 0.2, 0.0]))[0] @ FRONTAL)
    wide = kps.astype(np.float64) + 1e-9  # rounds back to the same float32 values
    np.testing.assert_array_equal(solved(wide).euler_angles, solved(kps).euler_angles)


def test_gimbal_lock_branch() -> None:
    # R[0,0] = R[1,0] = 0: the seed takes "yaw" from R[0,1], R[1,1] and sets "roll" to 0.
    r = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    np.testing.assert_allclose(euler_angles(r), [0.0, 90.0, 0.0], atol=1e-12)


@pytest.mark.parametrize(
    ("kps", "width", "height", "reason"),
    [
        (np.full((5, 2), 100.0), W, H, "all five at one point"),
        ([[0, 0], [10, 10], [20, 20], [30, 30], [40, 40]], W, H, "all five on one line"),
        ([[5, 0], [5, 10], [5, 20], [5, 30], [5, 40]], W, H, "all five on one line"),
        (project(FRONTAL), 0, H, "image size unknown or zero (0x480)"),
        (project(FRONTAL), W, 0, "image size unknown or zero (640x0)"),
        (project(FRONTAL), None, None, "image size unknown or zero (NonexNone)"),
        (np.full((5, 2), np.nan), W, H, "non-finite keypoints"),
        (np.zeros((4, 2)), W, H, "expected [5, 2] keypoints, got shape [4, 2]"),
    ],
)
def test_degenerate_input_gives_no_pose_with_a_reason(
    kps: object, width: int | None, height: int | None, reason: str
) -> None:
    pose = solve_pose(np.asarray(kps, dtype=np.float32), width, height)
    assert isinstance(pose, NoPose)
    assert reason in pose.reason


def test_a_solver_error_gives_no_pose(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise cv2.error("OpenCV(4.x) solvepnp.cpp:1 error: (-215:Assertion failed) npoints")

    monkeypatch.setattr(cv2, "solvePnP", broken)
    pose = solve_pose(project(FRONTAL), W, H)
    assert isinstance(pose, NoPose)
    assert pose.reason.startswith("solvePnP (EPnP) failed")


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        ((False, np.zeros((3, 1)), np.zeros((3, 1))), "found no solution"),
        ((True, np.full((3, 1), np.nan), np.zeros((3, 1))), "non-finite"),
    ],
)
def test_a_solver_failure_gives_no_pose(
    monkeypatch: pytest.MonkeyPatch, result: tuple[object, ...], reason: str
) -> None:
    monkeypatch.setattr(cv2, "solvePnP", lambda *args, **kwargs: result)
    pose = solve_pose(project(FRONTAL), W, H)
    assert isinstance(pose, NoPose)
    assert reason in pose.reason
