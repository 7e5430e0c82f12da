"""One identity of a new-format (or 3D) trainer JSON, checked and turned into its values.

A 3D identity (docs/formats.md) has the pose; its `landmarks_3d` are the posed mean face
(`pose_landmarks_3d`), and it has neither pseudo-3D landmarks nor spherical angles.

Every message names the file, the identity and the field; numbers become float32 exactly
(see `float32`). Right identities are converted in bulk (`identity_values.bulk_values`);
the checks here walk the others frame by frame to name what is wrong. `IdentityReader`
streams a whole file this way (`json_stream` finds and parses each identity): the one
reading of the trainer's JSON that `import-json` and `FeatureDataset` share, so both
accept and refuse exactly the same files."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import simdjson
from numpy.typing import NDArray

from featstore.errors import InputError
from featstore.store.fields import JSON_FORMATS, JsonKey
from featstore.trainer_json.fast_parse import FastValue, fast_parse
from featstore.trainer_json.formats import identity_format
from featstore.trainer_json.identity_values import (
    HalfwayNumber,
    IdentityValues,
    bulk_values,
    round_float32,
    stored_path,
)
from featstore.trainer_json.json_stream import (
    BinaryReader,
    JsonTextError,
    Member,
    parse_int,
    read_members,
    text_start,
)

NUMBER_TYPES = frozenset({Decimal, int, float})


HINT = "Hint: re-export the file with the tool that made it (or featstore export-json)."


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
    """Append the numbers of a nested list of `shape` (a number for `()`) to `out`,
    checking types and sizes."""
    if not shape:
        if type(value) not in NUMBER_TYPES:
            raise check.fail(where, "a number", describe(value))
        out.append(value)
        return
    what = (
        f"a list of {shape[0]} numbers"
        if len(shape) == 1
        else f"{shape[0]} lists of {' x '.join(map(str, shape[1:]))} numbers"
    )
    if not isinstance(value, list) or len(value) != shape[0]:
        raise check.fail(where, what, describe(value))
    if len(shape) == 1:
        if not set(map(type, value)) <= NUMBER_TYPES:
            index = next(i for i, v in enumerate(value) if type(v) not in NUMBER_TYPES)
            raise check.fail(f"{where}[{index}]", "a number", describe(value[index]))
        out.extend(value)
        return
    for i, row in enumerate(value):
        collect_numbers(check, row, shape[1:], f"{where}[{i}]", out)


def float32(
    check: Check, values: Sequence[Decimal | int | float], key: JsonKey, per_row: int
) -> NDArray[np.float32]:
    """JSON numbers rounded to the nearest float32 (ties to even); finite only.

    `values` are the flattened values of the field `key` names over the identity's rows,
    `per_row` numbers a row; the frontal image's row comes first when the field is on it
    (`key.face`). Floats are the parser's float64 roundings; Decimals are the numbers as
    written.

    Raises:
        HalfwayNumber: a float lies exactly halfway between two float32 values, where
            rounding the float64 again may be wrong: the caller parses decimals instead.
    """
    # float() of a Decimal rounds correctly to float64; numpy then rounds to float32.
    wide = np.array([float(v) for v in values] if check.exact else values, dtype=np.float64)
    narrow, halfway = round_float32(wide)
    if not np.isfinite(narrow).all():
        index = int(np.flatnonzero(~np.isfinite(narrow))[0])
        row, face = index // per_row, key.face
        where = face if face and row == 0 else f"video_data[{row - bool(face)}].{key.frame}"
        found = f"{values[index]}"
        if not np.isfinite(wide[index]):  # a NaN / Infinity token, or beyond float64
            found += (
                " (NaN or Infinity: not JSON numbers, though Python's json.dump writes them;"
                " or a number beyond float64)"
            )
        raise check.fail(where, "numbers within float32's range", found)
    for i in map(int, np.flatnonzero(halfway)):
        if not check.exact:
            raise HalfwayNumber
        # The decimal as written decides which side of the halfway point it is on.
        toward = np.float32(np.inf if wide[i] > narrow[i] else -np.inf)
        neighbour = np.nextafter(narrow[i], toward)
        exact, middle = Decimal(values[i]), Decimal(float(wide[i]))
        if exact != middle:
            upper, lower = max(narrow[i], neighbour), min(narrow[i], neighbour)
            narrow[i] = upper if exact > middle else lower
    return narrow


def identity_values(
    check: Check, value: dict[str, Any], base: Path, dim: int, *, three_d: bool = False
) -> IdentityValues:
    """The identity's values (frontal image first, frames in file order), checked.

    In bulk when everything is right (`bulk_values`); otherwise frame by frame, which
    names the first problem in file order.

    `three_d`: the identity is in the 3D format (docs/formats.md), with a pose and no angles.
    """
    if not check.exact:
        values = bulk_values(check.identity, value, base, dim, three_d=three_d)
        if values is not None:
            return values
    return _checked_values(check, value, base, dim, three_d=three_d)


def _checked_values(
    check: Check, value: dict[str, Any], base: Path, dim: int, *, three_d: bool
) -> IdentityValues:
    """`identity_values` frame by frame: the first problem in file order is named."""
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

    paths = [stored_path(base, string(check, value, "face_image_path"))]
    # Each field's numbers over all rows, converted in one go per field.
    fields = JSON_FORMATS["3d" if three_d else "new"].fields()
    numbers: dict[str, list[Any]] = {value_field.name: [] for value_field, _ in fields}

    def take(obj: dict[str, Any], key: str, shape: tuple[int, ...], where: str, to: str) -> None:
        collect_numbers(check, get(check, obj, key, where), shape, where + key, numbers[to])

    for value_field, key in fields:
        if key.face is not None:
            take(value, key.face, value_field.shape_for(dim), "", value_field.name)
    for i, frame in enumerate(video):
        where = f"video_data[{i}]."
        if not isinstance(frame, dict):
            raise check.fail(f"video_data[{i}]", "an object", describe(frame))
        paths.append(stored_path(base, string(check, frame, "image_path", where)))
        for value_field, key in fields:
            take(frame, key.frame, value_field.shape_for(dim), where, value_field.name)

    arrays = {}
    for value_field, key in fields:
        shape = value_field.shape_for(dim)
        converted = float32(check, numbers[value_field.name], key, int(np.prod(shape)))
        arrays[value_field.name] = converted.reshape(n + 1 if key.face else n, *shape)
    return IdentityValues(check.identity, paths, total, **arrays)


@dataclass
class IdentityReader:
    """A new-format file's identities, streamed as `IdentityValues`, checked.

    The first identity settles the model and dim; every later one must agree. Refused
    everywhere alike: a key that is not valid Unicode, an empty or repeated identity,
    numbers that are strings or booleans or beyond float32, and any shape or count that
    `identity_values` checks.

    Args:
        path: the JSON file (named in messages).
        base: relative paths resolve against it.
        model: the model the rows belong to; default: the file's `dinov2_model`.
        raw: read this open binary file instead of opening `path` (the importer hashes
            what it reads), from its position, file offset `start` (after any BOM).
    """

    path: Path
    base: Path
    model: str | None = None
    raw: BinaryReader | None = None
    start: int = 0
    dim: int | None = None
    file_model: str | None = None
    first: str | None = None  # the first identity, named when later ones disagree
    three_d: bool = False  # the file is in the 3D format (from its first identity)
    identities: int = 0
    frames: int = 0
    seen: set[str] = field(default_factory=set)

    def __iter__(self) -> Iterator[IdentityValues]:
        if self.raw is None:
            try:
                with open(self.path, "rb") as raw:
                    yield from self._read(raw, text_start(raw))
            except OSError as exc:
                raise InputError(f"cannot read {self.path}: {exc.strerror or exc}.") from exc
        else:
            yield from self._read(self.raw, self.start)
        if not self.identities:
            raise InputError(f"{self.path} holds no identity (it is an empty object).")

    def _read(self, raw: BinaryReader, start: int) -> Iterator[IdentityValues]:
        fast = functools.partial(fast_parse, simdjson.Parser())
        try:
            for member in read_members(raw, start=start, fast=fast):
                values = self._identity(member)
                self.identities += 1
                self.frames += values.frames
                yield values
        except JsonTextError as exc:
            raise text_error(self.path, exc) from None

    def _identity(self, member: Member) -> IdentityValues:
        name = member.name if member.name is not None else member.key_text
        check = Check(self.path, name, False)
        if member.name is None:
            found = f"{member.key_text} at line {member.line} ({member.key_error})"
            if "UTF-8" in str(member.key_error):
                raise InputError(
                    f"{self.path} is not UTF-8 text: the identity key {found}.\n"
                    "Hint: JSON files are UTF-8; re-encode it (e.g. `iconv -f LATIN1 -t UTF-8`)."
                )
            raise check.fail("its name", "valid Unicode (a lone surrogate is not)", found)
        if not name:
            raise check.fail("its name", "a non-empty identity", "an empty string")
        if name in self.seen:
            raise check.fail("its name", "each identity once", f"it again at line {member.line}")
        self.seen.add(name)
        value, fast = member.value, False
        if isinstance(value, FastValue):
            # simdjson's value, unless a feature vector hides nested lists (see fast_parse).
            fast = value.arrays == member.arrays
            value = value.value if fast else _python_value(member.text)
        if not isinstance(value, dict):
            raise check.fail("its value", "an object", describe(value))
        if identity_format(value) == "old":
            raise InputError(
                f"{self.path}: identity {name!r} is in the old format (face_image_path and "
                "video_images only): it has no features to import.\n"
                "Hint: extract the images with `featstore extract` instead."
            )
        self._settle_model(check, value)
        assert self.dim is not None
        try:
            if fast:
                values = bulk_values(name, value, self.base, self.dim, three_d=self.three_d)
                if values is not None:
                    return values
                # Something is off: orjson's value, for the checks to name it.
                value = _python_value(member.text)
                return _checked_values(check, value, self.base, self.dim, three_d=self.three_d)
            return identity_values(check, value, self.base, self.dim, three_d=self.three_d)
        except HalfwayNumber:
            # Rare (see `float32`): this identity again, its numbers as written.
            exact = json.loads(member.text, parse_float=Decimal, parse_int=parse_int)
            return identity_values(
                Check(self.path, name, True), exact, self.base, self.dim, three_d=self.three_d
            )

    def _settle_model(self, check: Check, value: dict[str, Any]) -> None:
        """Model and dim from the first identity; later ones must agree."""
        file_model = value.get("dinov2_model")
        if file_model is not None and not isinstance(file_model, str):
            raise check.fail("dinov2_model", "a string", describe(file_model))
        declared = value.get("feature_dim")
        if declared is not None and (type(declared) is not int or declared < 1):
            raise check.fail("feature_dim", "a positive integer", describe(declared))
        features = value.get("face_features")
        dim: int | None = declared
        if dim is None and isinstance(features, (list, np.ndarray)):
            dim = len(features)
        if self.first is None:
            self.first = check.identity
            self.three_d = identity_format(value) == "3d"
            self.file_model = file_model
            self.model = self.model or file_model
            if self.model is None:
                raise InputError(
                    f"{self.path} does not name its model (no dinov2_model in identity "
                    f"{check.identity!r}).\nHint: pass --model, e.g. --model dinov2_vitb14."
                )
            if dim is None:
                raise check.fail("face_features", "a list of numbers", describe(features))
            self.dim = dim
            for name in {self.model, file_model} - {None}:  # --model, and the file's claim
                check_model_dim(self.path, str(name), dim)
            return
        if (identity_format(value) == "3d") != self.three_d:
            kinds = ("the new format (no pose)", "the 3D format (with a pose)")
            raise check.fail(
                "its fields",
                f"{kinds[self.three_d]} like identity {self.first!r} (one format per file)",
                kinds[not self.three_d],
            )
        if file_model != self.file_model:
            raise check.fail(
                "dinov2_model",
                f"{self.file_model!r} like identity {self.first!r} (one model per file)",
                repr(file_model),
            )
        if dim is not None and dim != self.dim:
            raise check.fail(
                "feature_dim",
                f"{self.dim} like identity {self.first!r} (features of one model per file)",
                str(dim),
            )


def _python_value(text: bytes) -> Any:
    """A value's text as orjson parses it (valid JSON: simdjson accepted it)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # not expected; Python's json is the lenient one
        return json.loads(text, parse_int=parse_int)


def check_model_dim(path: Path, model: str, dim: int) -> None:
    """A known DINOv2 model name must come with that model's dim."""
    from featstore.extraction.dinov2_specs import MODEL_SPECS

    spec = MODEL_SPECS.get(model)
    if spec is not None and spec.embed_dim != dim:
        raise InputError(
            f"{path}: model {model} makes {spec.embed_dim}-dim features, but the file's "
            f"features have {dim}.\nHint: pass the right --model, or check dinov2_model and "
            "feature_dim in the file."
        )


def text_error(path: Path, exc: JsonTextError) -> InputError:
    """The message for a file that is not a JSON object, with its line and column."""
    if exc.kind == "truncated":
        return InputError(
            f"{path} is truncated: the JSON ends inside the top-level object, at {exc.where}."
            "\nHint: the file was cut short (an interrupted copy or write); make it again."
        )
    if exc.kind == "encoding":
        return InputError(
            f"{path} is not UTF-8 text: {exc}.\n"
            "Hint: JSON files are UTF-8; re-encode it (e.g. `iconv -f LATIN1 -t UTF-8`)."
        )
    return InputError(
        f"{path} is not valid JSON: {exc}.\nHint: `featstore validate {path}` lists every "
        "problem; re-export the file with the tool that made it (or featstore export-json)."
    )
