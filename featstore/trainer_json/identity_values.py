"""One identity of a new-format (or 3D) trainer JSON as float32 arrays, converted in bulk.

`bulk_values` is the fast way, taken for every identity that is right (nearly all): each
field's numbers over all of the identity's rows go to numpy in one call and are checked
in bulk (every row of the field's shape, every element a JSON number, every value within
float32's range). It names nothing: when anything is off it answers None, and
`identity_rows` walks the identity frame by frame, in file order, to name the first
problem (identity, field, expected, found). Both ways give the same arrays
(tests/trainer_json/test_identity_values.py).

Numbers become the nearest float32 to the decimal written (see `round_float32`).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from numpy.typing import NDArray

from featstore.store.fields import JSON_FORMATS
from featstore.store.paths import relative_path

# Python types of JSON numbers as orjson parses them (bool is not one of them).
_NUMBER_TYPES = frozenset({float, int})
_DROPPED_BITS = np.uint64((1 << 29) - 1)
_HALF_WAY = np.uint64(1 << 28)
_SMALLEST_NORMAL = float(np.finfo(np.float32).tiny)


class HalfwayNumber(Exception):
    """A number parsed to float64 fell exactly halfway between two float32 values."""


@dataclass(frozen=True)
class IdentityValues:
    """One identity's values, checked, as float32 arrays.

    Row 0 is the frontal image, rows 1.. the frames in file order. A field the identity's
    format does not have is None: the new format has no pose; the 3D format has no
    spherical angles and no pseudo-3D landmarks (its `landmarks_3d` are the posed mean
    face, `pose_landmarks_3d`).
    """

    name: str
    paths: list[str]  # as stored: relative to the base dir, forward slashes
    total: int  # total_video_images, as recorded (frames of any status)
    features: NDArray[np.float32]  # [rows, D]
    landmarks_2d: NDArray[np.float32]  # [rows, 5, 2]
    box: NDArray[np.float32]  # [rows, 4]
    landmarks_3d: NDArray[np.float32] | None = None  # [rows, 5, 3], new format
    spherical_angles: NDArray[np.float32] | None = None  # [frames, 5], new format
    avg_angle: NDArray[np.float32] | None = None  # [frames], new format
    euler_angles: NDArray[np.float32] | None = None  # [rows, 3], 3D format
    rotation_matrix: NDArray[np.float32] | None = None  # [rows, 3, 3], 3D format
    pose_landmarks_3d: NDArray[np.float32] | None = None  # [rows, 5, 3], 3D format

    @property
    def frames(self) -> int:
        return len(self.paths) - 1


def bulk_values(
    name: str, value: dict[str, Any], base: Path, dim: int, *, three_d: bool
) -> IdentityValues | None:
    """The identity's values when every field is right; None when anything is off.

    Raises:
        HalfwayNumber: a number needs its decimal to round (see `round_float32`).
    """
    video = value.get("video_data")
    if type(video) is not list or not all(type(frame) is dict for frame in video):
        return None
    n = len(video)
    total, valid = value.get("total_video_images", n), value.get("valid_video_images", n)
    if type(total) is not int or not n <= total < 2**31 or type(valid) is not int or valid != n:
        return None
    paths = [value.get("face_image_path"), *(frame.get("image_path") for frame in video)]
    if not all(type(path) is str and path for path in paths):
        return None
    numbers: dict[str, NDArray[np.float32]] = {}
    for field, key in JSON_FORMATS["3d" if three_d else "new"].fields():
        rows = [frame.get(key.frame) for frame in video]
        if key.face is not None:
            rows.insert(0, value.get(key.face))
        converted = _rows_float32(rows, (len(rows), *field.shape_for(dim)))
        if converted is None:
            return None
        numbers[field.name] = converted
    stored = [stored_path(base, path) for path in paths]
    return IdentityValues(name, stored, total, **numbers)


def stored_path(base: Path, value: str) -> str:
    """A path of the file as stored: relative to the import's base dir, forward slashes."""
    posix = value.replace("\\", "/")
    if not posix.startswith("/"):
        # Relative and staying below the base (the usual case): relpath would give the
        # normalised path itself; skip its two abspath calls per frame.
        normal = posixpath.normpath(posix)
        if normal != ".." and not normal.startswith("../"):
            return normal
    absolute = PurePosixPath(base.as_posix(), posix)  # an absolute `posix` wins
    return relative_path(Path(absolute), base)


def _rows_float32(rows: list[Any], shape: tuple[int, ...]) -> NDArray[np.float32] | None:
    """Nested lists of JSON numbers of exactly `shape` as float32; None otherwise."""
    try:
        wide = np.array(rows, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):  # a null, an object, a ragged row
        return None
    if wide.shape != shape:
        return None
    # np.array converts true and "0.5" too: every element must be a number. Vectors
    # from fast_parse are float64 arrays of numbers already.
    if not all(type(row) is np.ndarray for row in rows):
        elements: Iterable[Any] = rows
        for _ in shape[1:]:
            elements = chain.from_iterable(elements)
        if not set(map(type, elements)) <= _NUMBER_TYPES:
            return None
    narrow, halfway = round_float32(wide)
    if not np.isfinite(narrow).all():
        return None
    if halfway.any():
        raise HalfwayNumber
    return narrow


def round_float32(wide: NDArray[np.float64]) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """float64 values rounded to float32 (ties to even), and where that may be wrong.

    Rounding the decimal written to float64 (the parser) and then to float32 differs from
    rounding it straight to float32 only when the float64 lies exactly halfway between two
    float32 values: those places are flagged, for the caller to decide from the decimal.
    Values beyond float32's range become +-inf.
    """
    with np.errstate(over="ignore"):
        narrow = wide.astype(np.float32)
    # In float32's normal range, rounding drops the float64's 29 low significand bits:
    # halfway is exactly "1 followed by 28 zeros" there.
    halfway = (wide.view(np.uint64) & _DROPPED_BITS) == _HALF_WAY
    tiny = np.abs(wide) < _SMALLEST_NORMAL  # float32 subnormals drop more bits
    if tiny.any():
        halfway[tiny] = _halfway(wide[tiny], narrow[tiny])
    return narrow, halfway


def _halfway(wide: NDArray[np.float64], narrow: NDArray[np.float32]) -> NDArray[np.bool_]:
    """Where `wide` lies exactly between `narrow` and its float32 neighbour, generally."""
    back = narrow.astype(np.float64)
    toward = np.where(wide > back, np.float32(np.inf), np.float32(-np.inf))
    neighbour = np.nextafter(narrow, toward)
    halfway: NDArray[np.bool_] = (back != wide) & (
        (back + neighbour.astype(np.float64)) / 2 == wide
    )
    return halfway
