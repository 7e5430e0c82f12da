"""One identity of a new-format (or 3D) trainer JSON, checked and turned into its store rows.

A 3D identity (SPEC §7) fills the pose columns; its `landmarks_3d` are the posed mean face,
stored as `pose_landmarks_3d`, and the pseudo-3D `landmarks_3d` and the spherical angles,
which the 3D file does not hold, are null.

Every message names the file, the identity and the field; numbers become float32 exactly
(see `float32`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from featstore.errors import InputError
from featstore.store.format import fixed_size_column, store_schema
from featstore.store.paths import relative_path
from featstore.trainer_json.export import TOTAL_COLUMN
from featstore.trainer_json.format_3d import FACE_SHAPES_3D, FRAME_SHAPES_3D

NUMBER_TYPES = frozenset({Decimal, int, float})


HINT = "Hint: re-export the file with the tool that made it (or featstore export-json)."


FACE_SHAPES: dict[str, tuple[int, ...]] = {
    "face_landmarks_2d": (5, 2),
    "face_landmarks_3d": (5, 3),
    "face_box": (4,),
}


FRAME_SHAPES: dict[str, tuple[int, ...]] = {
    "landmarks_2d": (5, 2),
    "landmarks_3d": (5, 3),
    "box": (4,),
    "spherical_angles": (5,),
}


@dataclass(frozen=True)
class Check:
    """Messages that name the file, the identity and the field."""

    path: Path
    identity: str
    exact: bool  # numbers come as Decimal

    def fail(self, where: str, expected: str, found: str) -> InputError:
        return InputError(
            f"{self.path}: identity {self.identity!r}, {where}: expected {expected}, "
            f"found {found}.\n{HINT}"
        )


def describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if type(value) in NUMBER_TYPES:
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def get(check: Check, obj: dict[str, Any], key: str, where: str = "") -> Any:
    if key not in obj:
        raise check.fail(f"{where}{key}", "the field to be present", "it missing")
    return obj[key]


def string(check: Check, obj: dict[str, Any], key: str, where: str = "") -> str:
    value = get(check, obj, key, where)
    if not isinstance(value, str) or not value:
        raise check.fail(f"{where}{key}", "a non-empty string", describe(value))
    return value


def collect_numbers(
    check: Check, value: Any, shape: tuple[int, ...], where: str, out: list[Any]
) -> None:
    """Append the numbers of a nested list of `shape` to `out`, checking types and sizes."""
    what = (
        f"a list of {shape[0]} numbers"
        if len(shape) == 1
        else f"{shape[0]} lists of {' x '.join(map(str, shape[1:]))} numbers"
    )
    if not isinstance(value, list) or len(value) != shape[0]:
        raise check.fail(where, what, describe(value))
    if len(shape) == 1:
        if not {type(v) for v in value} <= NUMBER_TYPES:
            index = next(i for i, v in enumerate(value) if type(v) not in NUMBER_TYPES)
            raise check.fail(f"{where}[{index}]", "a number", describe(value[index]))
        out.extend(value)
        return
    for i, row in enumerate(value):
        collect_numbers(check, row, shape[1:], f"{where}[{i}]", out)


def float32(
    check: Check, values: Sequence[Decimal | int | float], field: str, per_row: int
) -> NDArray[np.float32]:
    """JSON numbers rounded to the nearest float32 (ties to even); finite only.

    `values` are the flattened `field` of the identity's rows, `per_row` numbers a row;
    the frontal image's row comes first when `field` starts with `face_`. Floats are the
    parser's float64 roundings; Decimals are the numbers as written.

    Raises:
        HalfwayNumber: a float lies exactly halfway between two float32 values, where
            rounding the float64 again may be wrong: the caller parses decimals instead.
    """
    # float() of a Decimal rounds correctly to float64; numpy then rounds to float32.
    wide = np.array([float(v) for v in values] if check.exact else values, dtype=np.float64)
    with np.errstate(over="ignore"):
        narrow = wide.astype(np.float32)
    if not np.isfinite(narrow).all():
        index = int(np.flatnonzero(~np.isfinite(narrow))[0])
        row, name = index // per_row, field.removeprefix("face_")
        on_face = field != name and row == 0
        where = field if on_face else f"video_data[{row - (field != name)}].{name}"
        raise check.fail(where, "numbers within float32's range", f"{values[index]}")
    # Rounding to float64 and then to float32 differs from rounding the number straight
    # to float32 only when the float64 is exactly halfway between two float32 values.
    back = narrow.astype(np.float64)
    toward = np.where(wide > back, np.float32(np.inf), np.float32(-np.inf))
    neighbour = np.nextafter(narrow, toward)
    halfway = (back != wide) & ((back + neighbour.astype(np.float64)) / 2 == wide)
    for i in map(int, np.flatnonzero(halfway)):
        if not check.exact:
            raise HalfwayNumber
        # The decimal as written decides which side of the halfway point it is on.
        exact, middle = Decimal(values[i]), Decimal(float(wide[i]))
        if exact != middle:
            upper, lower = max(narrow[i], neighbour[i]), min(narrow[i], neighbour[i])
            narrow[i] = upper if exact > middle else lower
    return narrow


def stored_path(base: Path, value: str) -> str:
    """A path of the file as stored: relative to the import's base dir, forward slashes."""
    posix = value.replace("\\", "/")
    absolute = PurePosixPath(base.as_posix(), posix)  # an absolute `posix` wins
    return relative_path(Path(absolute), base)


def identity_table(
    check: Check, value: dict[str, Any], target: RowTarget, dim: int, *, three_d: bool = False
) -> tuple[pa.Table, int]:
    """The rows of one identity (frontal image first, frames in file order), checked.

    `three_d`: the identity is in the 3D format (SPEC §7), with a pose and no angles.
    """
    identity = check.identity
    video = get(check, value, "video_data")
    if not isinstance(video, list):
        raise check.fail("video_data", "a list of frames", describe(video))
    n = len(video)
    total = value.get("total_video_images", n)
    if type(total) is not int or not n <= total < 2**31:
        raise check.fail(
            "total_video_images",
            f"an integer of at least {n} (the frames listed)",
            describe(total),
        )
    valid = value.get("valid_video_images", n)
    if valid != n or type(valid) is not int:
        raise check.fail("valid_video_images", f"{n} (the frames listed)", describe(valid))

    paths = [stored_path(target.base, string(check, value, "face_image_path"))]
    # Each field's numbers over all rows, converted in one go per field.
    face_shapes = FACE_SHAPES_3D if three_d else FACE_SHAPES
    frame_shapes = FRAME_SHAPES_3D if three_d else FRAME_SHAPES
    numbers: dict[str, list[Any]] = {name: [] for name in ("features", *frame_shapes, "avg")}

    def take(obj: dict[str, Any], key: str, shape: tuple[int, ...], where: str, to: str) -> None:
        collect_numbers(check, get(check, obj, key, where), shape, where + key, numbers[to])

    take(value, "face_features", (dim,), "", "features")
    for name, shape in face_shapes.items():
        take(value, name, shape, "", name.removeprefix("face_"))
    for i, frame in enumerate(video):
        where = f"video_data[{i}]."
        if not isinstance(frame, dict):
            raise check.fail(f"video_data[{i}]", "an object", describe(frame))
        paths.append(stored_path(target.base, string(check, frame, "image_path", where)))
        take(frame, "features", (dim,), where, "features")
        for name, shape in frame_shapes.items():
            take(frame, name, shape, where, name)
        if three_d:
            continue
        avg = get(check, frame, "avg_angle", where)
        if type(avg) not in NUMBER_TYPES:
            raise check.fail(f"{where}avg_angle", "a number", describe(avg))
        numbers["avg"].append(avg)

    rows = n + 1
    on_frames = np.arange(rows) > 0  # angles exist for frames, not for the frontal image
    everywhere = np.ones(rows, dtype=bool)
    schema = arrow_schema(dim)
    features = float32(check, numbers["features"], "face_features", dim).reshape(rows, dim)
    lm2d = float32(check, numbers["landmarks_2d"], "face_landmarks_2d", 10).reshape(rows, 5, 2)
    lm3d = float32(check, numbers["landmarks_3d"], "face_landmarks_3d", 15).reshape(rows, 5, 3)
    box = float32(check, numbers["box"], "face_box", 4).reshape(rows, 4)
    angles = np.zeros((rows, 5), dtype=np.float32)
    avg_angle = np.zeros(rows, dtype=np.float32)
    euler = np.zeros((rows, 3), dtype=np.float32)
    rotation = np.zeros((rows, 3, 3), dtype=np.float32)
    if three_d:
        euler = float32(check, numbers["euler_angles"], "face_euler_angles", 3).reshape(rows, 3)
        rotation = float32(check, numbers["rotation_matrix"], "face_rotation_matrix", 9)
        rotation = rotation.reshape(rows, 3, 3)
    else:
        angles[1:] = float32(check, numbers["spherical_angles"], "spherical_angles", 5).reshape(
            n, 5
        )
        avg_angle[1:] = float32(check, numbers["avg"], "avg_angle", 1)
    # Which rows hold what: the 3D format has the pose everywhere and no angles.
    pseudo_3d = ~everywhere if three_d else everywhere
    posed = everywhere if three_d else ~everywhere
    on_frames &= not three_d
    columns = {
        "identity": pa.array([identity] * rows, pa.string()),
        "model": pa.array([target.model] * rows, pa.string()),
        "role": pa.array(["face"] + ["frame"] * n, pa.string()),
        "image_path": pa.array(paths, pa.string()),
        "frame_index": pa.array([None, *range(n)], pa.int32()),
        "status": pa.array(["ok"] * rows, pa.string()),
        "error": pa.nulls(rows, pa.string()),
        "features": fixed_size_column(features, everywhere, schema.field("features").type),
        "landmarks_2d": fixed_size_column(lm2d, everywhere, schema.field("landmarks_2d").type),
        "landmarks_3d": fixed_size_column(lm3d, pseudo_3d, schema.field("landmarks_3d").type),
        "box": fixed_size_column(box, everywhere, schema.field("box").type),
        "det_score": pa.nulls(rows, pa.float32()),
        "spherical_angles": fixed_size_column(
            angles, on_frames, schema.field("spherical_angles").type
        ),
        "avg_angle": pa.array(avg_angle, pa.float32(), mask=~on_frames),
        "width": pa.nulls(rows, pa.int32()),
        "height": pa.nulls(rows, pa.int32()),
        "file_size": pa.nulls(rows, pa.int64()),
        "extracted_at": pa.repeat(target.extracted_at, rows).cast(
            schema.field("extracted_at").type
        ),
        "euler_angles": fixed_size_column(euler, posed, schema.field("euler_angles").type),
        "rotation_matrix": fixed_size_column(rotation, posed, schema.field("rotation_matrix").type),
        "pose_landmarks_3d": fixed_size_column(lm3d, posed, schema.field("pose_landmarks_3d").type),
        TOTAL_COLUMN: pa.array([total] + [None] * n, pa.int32()),
    }
    return pa.Table.from_pydict(columns, schema=schema), n


def arrow_schema(dim: int) -> pa.Schema:
    """The store's columns plus the recorded frame total (on the frontal row only)."""
    return store_schema(dim).append(pa.field(TOTAL_COLUMN, pa.int32()))


@dataclass(frozen=True)
class RowTarget:
    """Where an identity's rows go: the model, the import's base dir and its time."""

    model: str
    base: Path
    extracted_at: pa.Scalar


class HalfwayNumber(Exception):
    """A number parsed to float64 fell exactly halfway between two float32 values."""
