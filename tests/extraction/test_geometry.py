"""SPEC §2's pseudo-3D landmarks and spherical angles, against numbers worked by hand.

Every expected value below comes from the formulas in SPEC §2, written out in the
comments, not from running `featstore.extraction.geometry`:

    cx = (x1 + x2) / 2      cy = (y1 + y2) / 2      w = x2 - x1      h = y2 - y1
    xn = (x - cx) / (w / 2)                  yn = (y - cy) / (h / 2)
    r  = min(sqrt(xn² + yn²), 1)             θ  = acos(1 - r)
    φ  = atan2(yn, xn)   if xn != 0   else 0          (sic)
    p  = (sin θ · cos φ,  sin θ · sin φ,  cos θ)

    u = p_face / (|p_face| + 1e-8)           v = p_frame / (|p_frame| + 1e-8)
    m = degrees(acos(clip(u · v, -1, 1)))    dy = y_frame - y_face
    angle = m if dy < 0;  -m if dy > 0;  (m if m > 0.1 else 0) if dy == 0
"""

from __future__ import annotations

import numpy as np
import pytest

from featstore.extraction.geometry import (
    ANGLE_DEFINITION,
    average_angle,
    landmarks_3d,
    spherical_angles,
)

SQRT3_2 = 0.8660254037844386  # sin 60°
SQRT1_2 = 0.7071067811865476  # sin 45° = cos 45°
# Unit vectors normalised with the +1e-8 of the formula are a hair short of unit length:
# u · u = 1 / (1 + 1e-8)² ≈ 1 - 2e-8, so acos gives ~1.15e-8 rad extra at 60°, i.e.
# ~7e-7 degrees. Angles are compared to 1e-5 degrees.
ANGLE_TOL = 1e-5

# Box [0, 0, 100, 100]: cx = cy = 50, w / 2 = h / 2 = 50.
SQUARE_BOX = [0.0, 0.0, 100.0, 100.0]


def _five(point: tuple[float, float]) -> np.ndarray:
    """Five copies of one keypoint (the functions always take [5, 2])."""
    return np.array([point] * 5, dtype=np.float64)


def test_definition_name() -> None:
    assert ANGLE_DEFINITION == "face000-v1"


@pytest.mark.parametrize(
    ("point", "expected"),
    [
        # Centre (50, 50): xn = 0, yn = 0, r = 0, θ = acos(1) = 0, φ = 0 -> (0, 0, 1).
        pytest.param((50.0, 50.0), (0.0, 0.0, 1.0), id="centre"),
        # (100, 50): xn = 1, yn = 0, r = 1, θ = acos(0) = 90°, φ = atan2(0, 1) = 0
        #   -> (sin 90 cos 0, sin 90 sin 0, cos 90) = (1, 0, 0).
        pytest.param((100.0, 50.0), (1.0, 0.0, 0.0), id="right-edge"),
        # (0, 50): xn = -1, yn = 0, r = 1, θ = 90°, φ = atan2(0, -1) = 180° -> (-1, 0, 0).
        pytest.param((0.0, 50.0), (-1.0, 0.0, 0.0), id="left-edge"),
        # (75, 50): xn = 0.5, yn = 0, r = 0.5, θ = acos(0.5) = 60°, φ = 0
        #   -> (sin 60, 0, cos 60) = (0.8660254, 0, 0.5).
        pytest.param((75.0, 50.0), (SQRT3_2, 0.0, 0.5), id="half-right"),
        # (25, 50): xn = -0.5, r = 0.5, θ = 60°, φ = 180° -> (-0.8660254, 0, 0.5).
        pytest.param((25.0, 50.0), (-SQRT3_2, 0.0, 0.5), id="half-left"),
        # (75, 75): xn = yn = 0.5, r = sqrt(0.5) = 0.70710678, 1 - r = 0.29289322,
        #   θ = acos(0.29289322), sin θ = sqrt(1 - 0.29289322²) = 0.95614516, φ = 45°
        #   -> (0.95614516 · 0.70710678, 0.95614516 · 0.70710678, 0.29289322)
        #    = (0.67609672, 0.67609672, 0.29289322).
        pytest.param(
            (75.0, 75.0),
            (0.6760967247269783, 0.6760967247269783, 0.2928932188134524),
            id="diagonal",
        ),
        # (75, 25): xn = 0.5, yn = -0.5, same r and θ, φ = -45° -> (0.676.., -0.676.., 0.292..).
        pytest.param(
            (75.0, 25.0),
            (0.6760967247269783, -0.6760967247269783, 0.2928932188134524),
            id="diagonal-up",
        ),
        # The "sic" rule: xn == 0 but yn != 0 forces φ = 0.
        # (50, 0): xn = 0, yn = -1, r = 1, θ = 90°, φ forced 0 (atan2 would give -90°)
        #   -> (sin 90 cos 0, sin 90 sin 0, cos 90) = (1, 0, 0), not (0, -1, 0).
        pytest.param((50.0, 0.0), (1.0, 0.0, 0.0), id="sic-top"),
        # (50, 100): xn = 0, yn = 1, r = 1, θ = 90°, φ forced 0 -> (1, 0, 0), not (0, 1, 0).
        pytest.param((50.0, 100.0), (1.0, 0.0, 0.0), id="sic-bottom"),
        # (50, 75): xn = 0, yn = 0.5, r = 0.5, θ = 60°, φ forced 0 -> (0.8660254, 0, 0.5).
        pytest.param((50.0, 75.0), (SQRT3_2, 0.0, 0.5), id="sic-half"),
        # Outside the box r is clipped at 1:
        # (200, 50): xn = 3, yn = 0, r = min(3, 1) = 1, θ = 90°, φ = 0 -> (1, 0, 0).
        pytest.param((200.0, 50.0), (1.0, 0.0, 0.0), id="outside-right"),
        # (150, 150): xn = yn = 2, r = min(2.828, 1) = 1, θ = 90°, φ = 45°
        #   -> (0.70710678, 0.70710678, 0).
        pytest.param((150.0, 150.0), (SQRT1_2, SQRT1_2, 0.0), id="outside-diagonal"),
        # (-100, 50): xn = -3, r = 1, θ = 90°, φ = 180° -> (-1, 0, 0).
        pytest.param((-100.0, 50.0), (-1.0, 0.0, 0.0), id="outside-left"),
    ],
)
def test_landmarks_3d_square_box(
    point: tuple[float, float], expected: tuple[float, float, float]
) -> None:
    result = landmarks_3d(np.array(SQUARE_BOX), _five(point))
    assert result.shape == (5, 3)
    np.testing.assert_allclose(result, np.array([expected] * 5), rtol=0, atol=1e-12)


def test_landmarks_3d_sic_rule_differs_from_plain_atan2() -> None:
    # (50, 0): with plain atan2, φ = atan2(-1, 0) = -90° would give (0, -1, 0); the spec
    # keeps φ = 0 for xn == 0, so y of p is exactly 0 and x is 1.
    result = landmarks_3d(np.array(SQUARE_BOX), _five((50.0, 0.0)))
    assert np.all(result[:, 1] == 0.0)
    assert not np.allclose(result[0], (0.0, -1.0, 0.0), atol=1e-6)


def test_landmarks_3d_rectangular_offset_box_each_point_separately() -> None:
    # Box [10, 20, 110, 220]: cx = 60, cy = 120, w / 2 = 50, h / 2 = 100.
    box = np.array([10.0, 20.0, 110.0, 220.0])
    kps = np.array(
        [
            # (60, 120): centre -> (0, 0, 1).
            [60.0, 120.0],
            # (60, 170): xn = 0, yn = 50 / 100 = 0.5, r = 0.5, θ = 60°, φ forced 0
            #   -> (0.8660254, 0, 0.5).
            [60.0, 170.0],
            # (85, 120): xn = 25 / 50 = 0.5, yn = 0, r = 0.5, θ = 60°, φ = 0 -> same point.
            [85.0, 120.0],
            # (35, 220): xn = -25 / 50 = -0.5, yn = 100 / 100 = 1, r = min(sqrt(1.25), 1) = 1,
            #   θ = 90°, φ = atan2(1, -0.5): cos φ = -0.5 / sqrt(1.25) = -0.4472136,
            #   sin φ = 1 / sqrt(1.25) = 0.8944272 -> (-0.4472136, 0.8944272, 0).
            [35.0, 220.0],
            # (110, 20): xn = 1, yn = -1, r = min(1.414, 1) = 1, θ = 90°, φ = -45°
            #   -> (0.70710678, -0.70710678, 0).
            [110.0, 20.0],
        ]
    )
    expected = np.array(
        [
            [0.0, 0.0, 1.0],
            [SQRT3_2, 0.0, 0.5],
            [SQRT3_2, 0.0, 0.5],
            [-0.4472135954999579, 0.8944271909999159, 0.0],
            [SQRT1_2, -SQRT1_2, 0.0],
        ]
    )
    np.testing.assert_allclose(landmarks_3d(box, kps), expected, rtol=0, atol=1e-12)


def test_landmarks_3d_lie_on_unit_hemisphere() -> None:
    rng = np.random.default_rng(7)
    box = np.array([30.0, 40.0, 130.0, 170.0])
    kps = rng.uniform(0.0, 200.0, size=(5, 2))
    points = landmarks_3d(box, kps)
    np.testing.assert_allclose(np.linalg.norm(points, axis=1), 1.0, atol=1e-12)
    assert np.all(points[:, 2] >= 0.0)  # cos θ = 1 - r with r in [0, 1]


def test_landmarks_3d_computes_float32_inputs_in_float64() -> None:
    box32 = np.array([12.3, 45.6, 178.9, 230.1], dtype=np.float32)
    kps32 = np.array(
        [[60.1, 100.2], [120.3, 99.7], [95.5, 140.4], [70.2, 185.9], [125.8, 186.3]],
        dtype=np.float32,
    )
    result = landmarks_3d(box32, kps32)
    assert result.dtype == np.float64
    # Exactly the float64 computation on the (float32-valued) inputs ...
    expected = landmarks_3d(box32.astype(np.float64), kps32.astype(np.float64))
    np.testing.assert_array_equal(result, expected)
    # ... worked out independently from the formula in float64.
    x1, y1, x2, y2 = box32.astype(np.float64)
    x, y = kps32.astype(np.float64).T
    xn = (x - (x1 + x2) / 2) / ((x2 - x1) / 2)
    yn = (y - (y1 + y2) / 2) / ((y2 - y1) / 2)
    r = np.minimum(np.hypot(xn, yn), 1.0)
    theta = np.arccos(1.0 - r)
    phi = np.where(xn != 0, np.arctan2(yn, xn), 0.0)
    by_hand = np.stack(
        [np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], axis=1
    )
    np.testing.assert_allclose(result, by_hand, rtol=0, atol=1e-14)


# --- spherical angles -------------------------------------------------------------------


def _angles_for_points(face_point, frame_point, box=SQUARE_BOX):
    """Angles of five identical keypoints moved from face_point to frame_point."""
    face_2d, frame_2d = _five(face_point), _five(frame_point)
    return spherical_angles(
        landmarks_3d(np.array(box), face_2d),
        face_2d,
        landmarks_3d(np.array(box), frame_2d),
        frame_2d,
    )


def test_identical_landmarks_give_zero_angles() -> None:
    # u = v, u · v = |p|² / (|p| + 1e-8)² ≈ 1 - 2e-8 for |p| = 1, so
    # m = degrees(acos(1 - 2e-8)) ≈ 0.0115° > 0; but dy = 0 and m <= 0.1 -> 0 exactly.
    box = np.array([10.0, 20.0, 110.0, 220.0])
    kps = np.array([[40.0, 90.0], [80.0, 90.0], [60.0, 130.0], [45.0, 170.0], [75.0, 170.0]])
    points = landmarks_3d(box, kps)
    angles = spherical_angles(points, kps, points, kps)
    assert angles.shape == (5,)
    assert np.all(angles == 0.0)
    assert average_angle(angles) == 0.0


@pytest.mark.parametrize(
    ("face_point", "frame_point", "expected"),
    [
        # Face at the centre -> p_face = (0, 0, 1). Frame (50, 25): xn = 0, yn = -0.5,
        # r = 0.5, θ = 60°, φ forced 0 -> p_frame = (0.866, 0, 0.5); u · v = 0.5 -> m = 60°.
        # dy = 25 - 50 = -25 < 0 (moved up) -> +60.
        pytest.param((50.0, 50.0), (50.0, 25.0), 60.0, id="dy<0-positive"),
        # Frame (50, 75): yn = 0.5, same p_frame, m = 60°; dy = 75 - 50 = 25 > 0 -> -60.
        pytest.param((50.0, 50.0), (50.0, 75.0), -60.0, id="dy>0-negative"),
        # Frame (75, 50): xn = 0.5, p_frame = (0.866, 0, 0.5), m = 60°; dy = 0 and
        # m > 0.1 -> +60.
        pytest.param((50.0, 50.0), (75.0, 50.0), 60.0, id="dy==0-large-positive"),
        # Frame (25, 50): p_frame = (-0.866, 0, 0.5), m = 60°; dy = 0 -> +60 (never negative).
        pytest.param((50.0, 50.0), (25.0, 50.0), 60.0, id="dy==0-left-positive"),
        # Frame (100, 50): p_frame = (1, 0, 0), u · v = 0 -> m = 90°; dy = 0 -> +90.
        pytest.param((50.0, 50.0), (100.0, 50.0), 90.0, id="dy==0-ninety"),
        # Face (0, 50): p = (-1, 0, 0); frame (100, 50): p = (1, 0, 0); u · v = -1 / (1 + 1e-8)²
        # ≈ -1 + 2e-8 -> m ≈ 180° - 0.0115°; dy = 0 -> +m.
        pytest.param((0.0, 50.0), (100.0, 50.0), 180.0 - 0.011459155759671526, id="opposite"),
        # Face (50, 25) -> (0.866, 0, 0.5) (sic rule); frame (50, 0): xn = 0, yn = -1, r = 1,
        # θ = 90°, φ forced 0 -> (1, 0, 0); u · v = 0.866 -> m = 30°; dy = -25 -> +30.
        pytest.param((50.0, 25.0), (50.0, 0.0), 30.0, id="sic-both-up"),
        # Face (50, 100) -> (1, 0, 0) (sic), frame (100, 50) -> (1, 0, 0): the same 3D point
        # although the keypoint moved; m ≈ 0.0115° (the 1e-8), dy = 50 - 100 = -50 < 0 -> +m:
        # the 0.1-degree floor applies only when dy == 0.
        pytest.param((50.0, 100.0), (100.0, 50.0), 0.011459155759671526, id="tiny-m-dy<0"),
    ],
)
def test_spherical_angle_sign_rules(
    face_point: tuple[float, float], frame_point: tuple[float, float], expected: float
) -> None:
    angles = _angles_for_points(face_point, frame_point)
    assert angles.dtype == np.float64
    np.testing.assert_allclose(angles, np.full(5, expected), rtol=0, atol=ANGLE_TOL)


# p_face = (0, 0, 1), p_frame = (sin a, 0, cos a), both of length 1, so
# u · v = cos a / (1 + 1e-8)² and m = degrees(acos(cos a / (1 + 1e-8)²)). Near 0 the 1e-8
# matters (acos is steep there): m ≈ sqrt(a² + 0.0114592²) degrees, i.e.
#   a = 0.05 -> m = 0.0512963,  a = 0.2 -> m = 0.2003280,
#   a = 10   -> m = 10.0000065, a = 25  -> m = 25.0000025,
#   a = 0.098 -> m = 0.0986677 (just below the 0.1 floor),
#   a = 0.102 -> m = 0.1026417 (just above it).
M_005 = 0.051296317780715174
M_0102 = 0.10264166850022063
M_02 = 0.2003280103172772
M_10 = 10.000006498808023
M_25 = 25.000002457423737


@pytest.mark.parametrize(
    ("degrees_apart", "dy", "expected"),
    [
        # dy == 0: m = 0.0513 <= 0.1 -> 0 exactly; m = 0.2003 > 0.1 -> +m.
        pytest.param(0.05, 0.0, 0.0, id="dy==0-below-floor"),
        pytest.param(0.2, 0.0, M_02, id="dy==0-above-floor"),
        pytest.param(0.098, 0.0, 0.0, id="dy==0-just-below-floor"),
        pytest.param(0.102, 0.0, M_0102, id="dy==0-just-above-floor"),
        pytest.param(10.0, 0.0, M_10, id="dy==0-ten"),
        # dy != 0: the floor does not apply, the sign follows dy.
        pytest.param(0.05, -1.0, M_005, id="dy<0-small"),
        pytest.param(0.05, 1.0, -M_005, id="dy>0-small"),
        pytest.param(10.0, 3.0, -M_10, id="dy>0-ten"),
        # Only the y difference counts: a negative y moves "up".
        pytest.param(25.0, -0.5, M_25, id="dy<0-half-pixel"),
    ],
)
def test_spherical_angle_from_given_points(
    degrees_apart: float, dy: float, expected: float
) -> None:
    a = np.radians(degrees_apart)
    face_3d = np.tile([0.0, 0.0, 1.0], (5, 1))
    frame_3d = np.tile([np.sin(a), 0.0, np.cos(a)], (5, 1))
    face_2d = _five((40.0, 60.0))
    frame_2d = _five((47.0, 60.0 + dy))  # x differs, only y decides the sign
    angles = spherical_angles(face_3d, face_2d, frame_3d, frame_2d)
    if expected == 0.0:
        assert np.all(angles == 0.0)
    else:
        np.testing.assert_allclose(angles, np.full(5, expected), rtol=0, atol=1e-9)


def test_spherical_angles_clip_dot_product() -> None:
    # p = (1, 1, 1) · 1e9: u = p / (|p| + 1e-8) and in float64 u · u = 1.0000000000000002 > 1,
    # so acos without the clip would be NaN. clip -> 1 -> m = 0 (dy < 0 -> +0, no floor).
    big = np.tile([1e9, 1e9, 1e9], (5, 1))
    u = big[0] / (np.linalg.norm(big[0]) + 1e-8)
    assert float(u @ u) > 1.0  # the premise of this test
    face_2d, frame_2d = _five((0.0, 10.0)), _five((0.0, 5.0))
    with np.errstate(invalid="raise"):
        angles = spherical_angles(big, face_2d, big, frame_2d)
    assert np.all(angles == 0.0)
    # The opposite vector: u · v = -1.0000000000000002 -> clip -> -1 -> m = 180 exactly;
    # dy = 5 > 0 -> -180.
    with np.errstate(invalid="raise"):
        angles = spherical_angles(big, frame_2d, -big, face_2d)
    np.testing.assert_array_equal(angles, np.full(5, -180.0))


def test_spherical_angles_each_keypoint_separately_and_average() -> None:
    # Five different keypoints in one call, box [0, 0, 100, 100]; face all at the centre
    # (p = (0, 0, 1)), frame keypoints worked out as in the cases above:
    face_2d = _five((50.0, 50.0))
    frame_2d = np.array(
        [
            [50.0, 25.0],  # m = 60, dy = -25 -> +60
            [50.0, 75.0],  # m = 60, dy = +25 -> -60
            [100.0, 50.0],  # m = 90, dy = 0  -> +90
            [50.0, 50.0],  # m = 0.0115, dy = 0 -> 0
            [50.0, 100.0],  # (sic) p = (1, 0, 0): m = 90, dy = +50 -> -90
        ]
    )
    box = np.array(SQUARE_BOX)
    angles = spherical_angles(
        landmarks_3d(box, face_2d), face_2d, landmarks_3d(box, frame_2d), frame_2d
    )
    np.testing.assert_allclose(angles, [60.0, -60.0, 90.0, 0.0, -90.0], rtol=0, atol=ANGLE_TOL)
    assert angles[3] == 0.0
    # avg = (60 - 60 + 90 + 0 - 90) / 5 = 0.
    assert average_angle(angles) == pytest.approx(0.0, abs=ANGLE_TOL)


@pytest.mark.parametrize(
    ("angles", "expected"),
    [
        # (10 - 20 + 30 + 0 + 5) / 5 = 25 / 5 = 5.
        ([10.0, -20.0, 30.0, 0.0, 5.0], 5.0),
        # (60 + 60 + 60 + 60 + 60) / 5 = 60.
        ([60.0] * 5, 60.0),
        # (-1 - 2 - 3 - 4 - 5) / 5 = -3.
        ([-1.0, -2.0, -3.0, -4.0, -5.0], -3.0),
    ],
)
def test_average_angle_is_the_mean(angles: list[float], expected: float) -> None:
    result = average_angle(np.array(angles))
    assert isinstance(result, float)
    assert result == pytest.approx(expected, abs=1e-12)


def test_average_angle_of_float32_is_computed_in_float64() -> None:
    # float32 values whose float32 sum rounds: 16777216 + 1 + 1 + 1 + 1 = 16777220 in
    # float64, but float32 accumulation of 16777216 + 1 stays at 16777216.
    values = np.array([16777216.0, 1.0, 1.0, 1.0, 1.0], dtype=np.float32)
    assert average_angle(values) == 16777220.0 / 5


def test_spherical_angles_compute_float32_inputs_in_float64() -> None:
    box = np.array([10.0, 20.0, 110.0, 220.0])
    face_2d = np.array([[40.0, 90.0], [80.0, 90.0], [60.0, 130.0], [45.0, 170.0], [75.0, 170.0]])
    frame_2d = face_2d + np.array([[3.3, -2.1], [2.7, 1.9], [4.1, 0.0], [-1.3, 2.2], [0.4, -3.7]])
    face_3d, frame_3d = landmarks_3d(box, face_2d), landmarks_3d(box, frame_2d)
    args32 = [a.astype(np.float32) for a in (face_3d, face_2d, frame_3d, frame_2d)]
    result = spherical_angles(*args32)
    assert result.dtype == np.float64
    expected = spherical_angles(*[a.astype(np.float64) for a in args32])
    np.testing.assert_array_equal(result, expected)
    # Worked from the formula in float64, independently of featstore.
    u64, fa2, v64, fr2 = (a.astype(np.float64) for a in args32)
    u = u64 / (np.linalg.norm(u64, axis=1, keepdims=True) + 1e-8)
    v = v64 / (np.linalg.norm(v64, axis=1, keepdims=True) + 1e-8)
    m = np.degrees(np.arccos(np.clip((u * v).sum(axis=1), -1.0, 1.0)))
    dy = fr2[:, 1] - fa2[:, 1]
    by_hand = np.where(dy < 0, m, np.where(dy > 0, -m, np.where(m > 0.1, m, 0.0)))
    np.testing.assert_allclose(result, by_hand, rtol=0, atol=1e-12)
    # Keypoint 2 did not move vertically (dy == 0) but moved 4.1 px right: m > 0.1 -> +m.
    assert result[2] > 0.1
