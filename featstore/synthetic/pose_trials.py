"""Keypoints that look like InsightFace's on real faces, at known poses, and how much a head
pose definition's angles move when they move by a fraction of a pixel (docs/pose.md).

    faces = face_grid(face_widths=(100, 200, 400), seed=0)
    changes = angle_changes(solve_pose, faces, noise_px=0.1, trials=20, seed=1)
    summary = Stability.of(changes)      # median / p95 per angle, shares of jumps, wraps

`bench/bench_pose.py` measures both definitions with these; the tests check the stable one
stays stable. Real keypoints do not fit the seed's mean face (`MEAN_FACE_3D`): InsightFace
puts the mouth about 1.2 eye distances below the eyes on a frontal face, the mean face 0.6
(its eyes 72 mm apart, its mouth 43 mm below them). So the faces here are not the mean face:
they are InsightFace's own frontal layout (`arcface_dst`, the 112x112 template it aligns
faces to) given depth, each face varied a little, posed and projected. Projecting the mean
face itself would fit it exactly, where every solver looks stable.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from featstore.extraction.pose import HeadPose, Solver

# face000's stills: 1440x1080, focal length = width (the pose definitions' camera).
IMAGE_SIZE = (1440, 1080)
EYE_DISTANCE_MM = 63.0
# Depth in millimetres (the nose tip 0, z towards the viewer as in the mean face).
_DEPTH_MM = np.array([-30.0, -30.0, 0.0, -25.0, -25.0])
# A face box is about twice as wide as the eyes are apart (InsightFace's boxes on the
# 112x112 template and on face000's stills).
FACE_WIDTH_PER_EYE_DISTANCE = 2.0
# Per face, each keypoint moved by this much (mm, per coordinate): faces differ.
SHAPE_SD_MM = 2.0
# An upright frontal face: y up in the face, y down in the camera.
FRONTAL = np.diag([1.0, -1.0, -1.0])
JUMP_DEGREES = 5.0  # an angle change above this is a jump, not noise


def insightface_face_3d() -> NDArray[np.float64]:
    """InsightFace's frontal keypoint layout in millimetres (nose tip at the origin, y up),
    with depth: the face real keypoints look like."""
    from insightface.utils.face_align import arcface_dst

    template = np.asarray(arcface_dst, np.float64)
    scale = EYE_DISTANCE_MM / np.linalg.norm(template[1] - template[0])
    xy = (template - template[2]) * scale * np.array([1.0, -1.0])
    return np.column_stack([xy, _DEPTH_MM])


def rotation(yaw: float, pitch: float, roll: float) -> NDArray[np.float64]:
    """The rotation of an upright frontal face turned by `yaw` (left-right), `pitch`
    (up-down) and `roll` (in the image plane), degrees, in the usual sense (not the
    seed's names)."""
    import cv2

    turn = cv2.Rodrigues(np.radians([pitch, yaw, 0.0]))[0]
    tilt = cv2.Rodrigues(np.radians([0.0, 0.0, roll]))[0]
    return np.asarray(tilt @ turn @ FRONTAL, np.float64)


@dataclass(frozen=True)
class Face:
    """One face's keypoints (float32, as InsightFace gives them) and its image's size."""

    keypoints: NDArray[np.float32]
    width: int
    height: int
    face_width: int  # pixels
    angles: tuple[float, float, float]  # the usual yaw, pitch, roll it was posed with


def posed_face(
    angles: tuple[float, float, float],
    face_width: int,
    rng: np.random.Generator,
    *,
    shape_sd_mm: float = SHAPE_SD_MM,
) -> Face:
    """A face of `face_width` pixels at `angles`, somewhere in a 1440x1080 image."""
    width, height = IMAGE_SIZE
    face = insightface_face_3d() + rng.normal(0.0, shape_sd_mm, (5, 3))
    eye_px = face_width / FACE_WIDTH_PER_EYE_DISTANCE
    # The nose tip's distance, where the eyes (further back) are eye_px apart (f = width).
    distance = width * EYE_DISTANCE_MM / eye_px + _DEPTH_MM[0]
    offset = np.array([rng.uniform(-0.25, 0.25) * width, rng.uniform(-0.2, 0.2) * height])
    centre = offset * distance / width
    posed = rotation(*angles) @ face.T + np.array([[centre[0]], [centre[1]], [distance]])
    pixels = posed[:2] / posed[2] * width + np.array([[width / 2], [height / 2]])
    return Face(pixels.T.astype(np.float32), width, height, face_width, angles)


def face_grid(
    *,
    face_widths: Iterable[int] = (100, 200, 400),
    yaws: Iterable[float] = (-40.0, -20.0, 0.0, 20.0, 40.0),
    pitches: Iterable[float] = (-20.0, 0.0, 20.0),
    rolls: Iterable[float] = (-15.0, 0.0, 15.0),
    seed: int = 0,
) -> list[Face]:
    """One face per (width, yaw, pitch, roll) of the grid, each its own shape and place."""
    rng = np.random.default_rng(seed)
    rolls, pitches, yaws = list(rolls), list(pitches), list(yaws)
    return [
        posed_face((yaw, pitch, roll), face_width, rng)
        for face_width in face_widths
        for yaw in yaws
        for pitch in pitches
        for roll in rolls
    ]


@dataclass(frozen=True)
class Changes:
    """What keypoint noise did to a definition's angles, one row per trial.

    Attributes:
        gaps: `[trials, 3]` how far each Euler angle moved (degrees, modulo 360); NaN
            rows where either solve gave no pose.
        roll_wraps: `[trials]` the seed's roll crossed ±180 (from +179 to -179, say): a
            change of 2 degrees modulo 360, of 358 for statistics that are not circular.
    """

    gaps: NDArray[np.float64]
    roll_wraps: NDArray[np.bool_]


def angle_changes(
    solve: Solver, faces: Iterable[Face], *, noise_px: float, trials: int, seed: int
) -> Changes:
    """How the angles of `solve` move when Gaussian noise of `noise_px` pixels is added to
    each face's keypoints, `trials` times a face. The noise is drawn from `seed` alone, so
    two solvers given the same faces and seed see the same noisy keypoints."""
    rng = np.random.default_rng(seed)
    gaps, wraps = [], []
    for face in faces:
        clean = solve(face.keypoints, face.width, face.height)
        for _ in range(trials):
            noise = rng.normal(0.0, noise_px, (5, 2))
            noisy = solve((face.keypoints + noise).astype(np.float32), face.width, face.height)
            if isinstance(clean, HeadPose) and isinstance(noisy, HeadPose):
                gaps.append(angle_gap(clean.euler_angles, noisy.euler_angles))
                wraps.append(abs(clean.euler_angles[2] - noisy.euler_angles[2]) > 180.0)
            else:
                gaps.append(np.full(3, np.nan))
                wraps.append(False)
    return Changes(np.array(gaps, np.float64).reshape(-1, 3), np.array(wraps, bool))


def angle_gap(a: NDArray[np.floating], b: NDArray[np.floating]) -> NDArray[np.float64]:
    """|a - b| in degrees, modulo 360 (roll near ±180 is one angle, not two)."""
    return np.abs((np.asarray(a, np.float64) - np.asarray(b) + 180.0) % 360.0 - 180.0)


@dataclass(frozen=True)
class Stability:
    """How much a definition's angles moved under keypoint noise, over many trials."""

    median: tuple[float, float, float]  # degrees, per angle (the seed's yaw, pitch, roll)
    p95: tuple[float, float, float]
    jumps: float  # share of trials where some angle moved more than JUMP_DEGREES
    roll_wraps: float  # share of trials where the roll crossed ±180 (harmless modulo 360)
    failures: float  # share of trials without a pose (clean or noisy)
    trials: int

    @classmethod
    def of(cls, changes: Changes) -> Stability:
        gaps = changes.gaps
        solved = gaps[~np.isnan(gaps).any(axis=1)]
        n = max(len(gaps), 1)
        wraps = float(changes.roll_wraps.sum() / n)
        failures = float((len(gaps) - len(solved)) / n)
        if not len(solved):
            nan = (math.nan, math.nan, math.nan)
            return cls(nan, nan, math.nan, wraps, failures, len(gaps))
        return cls(
            _triple(np.median(solved, axis=0)),
            _triple(np.percentile(solved, 95, axis=0)),
            float((solved.max(axis=1) > JUMP_DEGREES).sum() / n),
            wraps,
            failures,
            len(gaps),
        )


def _triple(values: NDArray[np.float64]) -> tuple[float, float, float]:
    return float(values[0]), float(values[1]), float(values[2])
