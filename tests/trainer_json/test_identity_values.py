"""The two ways an identity's JSON becomes arrays agree: in bulk (simdjson's vectors or
orjson's lists, checked per field) and frame by frame (the checks that name problems);
and what the bulk way cannot trust goes the careful way."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from featstore.errors import InputError
from featstore.trainer_json import identity_rows
from featstore.trainer_json.identity_rows import Check, IdentityReader, identity_values
from featstore.trainer_json.identity_values import IdentityValues, _halfway, round_float32

DIM = 16
MODEL = "synthetic"


def identity(rng: np.random.Generator, frames: int = 3, *, three_d: bool = False) -> dict:
    """A random identity in the new (or 3D) format, numbers as float32 decimals and ints."""

    def numbers(*shape: int) -> Any:
        values = rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 4)
        return values.astype(np.float32).tolist()

    def pose(entry: dict[str, Any], prefix: str) -> None:
        entry[f"{prefix}euler_angles"] = numbers(3)
        entry[f"{prefix}rotation_matrix"] = numbers(3, 3)

    face = {
        "face_image_path": "faces/a.jpg",
        "face_features": numbers(DIM),
        "face_landmarks_2d": numbers(5, 2),
        "face_landmarks_3d": numbers(5, 3),
        "face_box": [10, 20, 30, 40],  # integers are numbers too
    }
    video = []
    for i in range(frames):
        frame = {
            "image_path": f"videos/a/{i}.jpg",
            "features": numbers(DIM),
            "landmarks_2d": numbers(5, 2),
            "landmarks_3d": numbers(5, 3),
            "box": numbers(4),
        }
        if three_d:
            pose(frame, "")
        else:
            frame["spherical_angles"] = numbers(5)
            frame["avg_angle"] = float(rng.standard_normal())
        video.append(frame)
    if three_d:
        pose(face, "face_")
    return {**face, "video_data": video, "feature_dim": DIM, "dinov2_model": MODEL}


def read_file(path: Path) -> list[IdentityValues]:
    return list(IdentityReader(path, path.parent))


def careful(name: str, value: dict[str, Any], base: Path, *, three_d: bool) -> IdentityValues:
    """The frame-by-frame way, whatever the bulk way would do."""
    return identity_rows._checked_values(
        Check(base / "x.json", name, False), value, base, DIM, three_d=three_d
    )


def assert_same(left: IdentityValues, right: IdentityValues) -> None:
    for field in fields(IdentityValues):
        a, b = getattr(left, field.name), getattr(right, field.name)
        if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
            assert a.dtype == b.dtype == np.float32, field.name
            assert a.tobytes() == b.tobytes(), field.name  # bit for bit, signs of zero too
        else:
            assert a == b, field.name


@pytest.mark.parametrize("three_d", [False, True])
@pytest.mark.parametrize("indent", [None, 2])
def test_bulk_and_careful_ways_agree(tmp_path: Path, three_d: bool, indent: int | None) -> None:
    rng = np.random.default_rng(7)
    document = {f"person_{i}": identity(rng, frames=i, three_d=three_d) for i in range(5)}
    path = tmp_path / "file.json"
    path.write_text(json.dumps(document, indent=indent))
    read = read_file(path)
    assert [v.name for v in read] == list(document)
    for values, value in zip(read, document.values(), strict=True):
        assert_same(values, careful(values.name, value, tmp_path, three_d=three_d))
        # orjson's lists through the bulk way too
        check = Check(path, values.name, False)
        assert_same(values, identity_values(check, value, tmp_path, DIM, three_d=three_d))


def test_a_halfway_number_rounds_from_its_decimal(tmp_path: Path) -> None:
    # 7.038531e-26 is the shortest decimal of a float32, but it parses to a float64
    # exactly halfway between that float32 and its neighbour, which rounds to even: the
    # other one. The decimal must decide.
    via_float64 = np.float32(float("7.038531e-26"))
    candidates = [np.nextafter(via_float64, np.float32(s)) for s in (-1, 1)]
    [expected] = [c for c in candidates if str(c) == "7.038531e-26"]
    assert str(via_float64) != "7.038531e-26"  # the trap
    value = identity(np.random.default_rng(1), frames=1)
    value["video_data"][0]["features"][3] = "@"
    path = tmp_path / "file.json"
    path.write_text(json.dumps({"a": value}).replace('"@"', "7.038531e-26"))
    [values] = read_file(path)
    assert values.features[1, 3] == expected
    assert round_float32(np.array([7.038531e-26]))[1].all()  # flagged for the decimal


@pytest.mark.parametrize(
    ("written", "message"),
    [
        # A vector hiding a nested list: simdjson's as_buffer would flatten it.
        ("[[0.5], " + ", ".join(["0.5"] * (DIM - 1)) + "]", "video_data[0].features[0]"),
        ("[[], 0.5, [0.5, 0.5], " + ", ".join(["0.5"] * (DIM - 3)) + "]", "features[0]"),
        ("[true, " + ", ".join(["0.5"] * (DIM - 1)) + "]", "found true"),
        ('["0.5", ' + ", ".join(["0.5"] * (DIM - 1)) + "]", "found the string '0.5'"),
        ("[" + ", ".join(["0.5"] * (DIM - 1)) + "]", f"a list of {DIM} numbers"),
        ("[3.5e38, " + ", ".join(["0.5"] * (DIM - 1)) + "]", "within float32's range"),
    ],
)
def test_what_the_bulk_way_cannot_trust_is_named(
    tmp_path: Path, written: str, message: str
) -> None:
    value = identity(np.random.default_rng(2), frames=2)
    value["video_data"][0]["features"] = "@"
    path = tmp_path / "file.json"
    path.write_text(json.dumps({"a": value}).replace('"@"', written))
    with pytest.raises(InputError, match="video_data\\[0\\]") as caught:
        read_file(path)
    assert message in str(caught.value)


def test_a_repeated_key_keeps_the_last_value_as_json_load_does(tmp_path: Path) -> None:
    value = identity(np.random.default_rng(3), frames=1)
    text = json.dumps({"a": value})
    first = json.dumps(value["video_data"][0]["features"])
    repeated = text.replace(
        f'"features": {first}', f'"features": {json.dumps([9.0] * DIM)}, "features": {first}'
    )
    assert repeated != text
    path = tmp_path / "file.json"
    path.write_text(repeated)
    [values] = read_file(path)
    last = json.loads(repeated)["a"]["video_data"][0]["features"]
    assert values.features[1].tolist() == np.array(last, np.float32).tolist()


def test_round_float32_flags_exactly_the_halfway_values() -> None:
    rng = np.random.default_rng(4)
    exponents = rng.integers(-45, 38, 100_000).astype(np.float32)
    narrow = rng.standard_normal(100_000).astype(np.float32) * np.float32(10.0) ** exponents
    narrow = narrow[np.isfinite(narrow)]
    above = np.nextafter(narrow, np.float32(np.inf))
    midpoints = (narrow.astype(np.float64) + above.astype(np.float64)) / 2
    wide = np.concatenate(
        [rng.standard_normal(10_000), midpoints, narrow.astype(np.float64), midpoints * 1.0000001]
    )
    rounded, halfway = round_float32(wide)
    with np.errstate(over="ignore"):
        expected = wide.astype(np.float32)
    assert np.array_equal(rounded, expected, equal_nan=True)
    assert np.array_equal(halfway, _halfway(wide, expected))
    finite = np.isfinite(midpoints)
    assert halfway[10_000 : 10_000 + len(midpoints)][finite].all()  # subnormals included
