"""An npy training directory read and checked, shared by import-npy, validate and the Dataset.

Every check names the file, the field, what was expected and what was found. A reader
either raises the first problem (`strict`, for import and the Dataset: nothing is written
or built from a bad directory) or collects them all (validate). The npy files are
memory-mapped after their headers are checked against their sizes (`npy_blocks`); the
JSON files are read item by item (`json_items`), so memory does not grow with the rows.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featstore.errors import InputError
from featstore.npy_dir.json_items import ListItems, object_items
from featstore.npy_dir.layout import (
    FAILURE_KINDS,
    FEATURE_DTYPE,
    FILE_NAMES,
    KEYPOINTS_DTYPE,
    KINDS_WITH_ERROR,
    LAYOUTS,
    ROW_LISTS,
    STANDARD_INFO_KEYS,
    Side,
)
from featstore.npy_dir.npy_blocks import NpyHeader, NpyProblem, NpyRows, open_rows, read_header


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the directory."""

    file: str
    field: str
    expected: str
    actual: str
    hint: str = ""
    severity: str = "error"  # or "note": reported, not a failure

    def format(self) -> str:
        text = f"{self.file}: {self.field}: expected {self.expected}, actual {self.actual}."
        return text + (f"\nHint: {self.hint}" if self.hint else "")


class Problems:
    """Where problems go: raised at once (`strict`) or collected."""

    def __init__(self, folder: Path, *, strict: bool) -> None:
        self.folder, self.strict = folder, strict
        self.found: list[Problem] = []

    def add(self, problem: Problem) -> None:
        if self.strict and problem.severity == "error":
            raise InputError(f"{self.folder}/{problem.format()}")
        self.found.append(problem)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.found if p.severity == "error"]


def is_npy_dir(path: Path) -> bool:
    """Whether `path` is a folder holding one of the eight files (validate's detector)."""
    return path.is_dir() and any((path / name).exists() for name in FILE_NAMES)


def check_files(folder: Path, problems: Problems) -> bool:
    """The eight files, nothing else; False when one is missing."""
    if not folder.is_dir():
        problems.add(Problem(str(folder), "folder", "an npy training directory", "no folder"))
        return False
    names = set(os.listdir(folder))
    for name in sorted(names - set(FILE_NAMES)):
        problems.add(
            Problem(
                name,
                "file",
                "one of the eight files",
                "an extra file",
                "move it out: the directory is written and replaced as a whole",
            )
        )
    complete = True
    for name in FILE_NAMES:
        if name not in names or not (folder / name).is_file():
            problems.add(
                Problem(
                    name,
                    "file",
                    "present (a regular file)",
                    "missing",
                    "write the directory again (featstore export-npy, or the seed's script)",
                )
            )
            complete = False
    return complete


@dataclass
class SideArrays:
    """One side's npy files, checked and mapped."""

    features: NpyRows  # float32 [N, D]
    keypoints: NpyRows  # float64 [N, 5, 3]


def read_arrays(folder: Path, side: Side, problems: Problems) -> SideArrays | None:
    """The side's two npy files with their dtypes and shapes checked (None when unusable)."""
    layout = LAYOUTS[side]
    headers: list[NpyHeader] = []
    for name, dtype, rest in (
        (layout.feature, FEATURE_DTYPE, None),
        (layout.keypoints, KEYPOINTS_DTYPE, (5, 3)),
    ):
        try:
            header = read_header(folder / name)
        except NpyProblem as exc:
            problems.add(Problem(name, exc.field, exc.expected, exc.actual, exc.hint))
            return None
        shape_ok = len(header.shape) == 2 if rest is None else header.shape[1:] == rest
        if header.dtype != dtype:
            problems.add(
                Problem(
                    name,
                    "dtype",
                    str(dtype),
                    str(header.dtype),
                    f"save it as np.asarray(x, dtype='{dtype}')",
                )
            )
            return None
        if header.fortran_order:
            problems.add(
                Problem(
                    name,
                    "fortran_order",
                    "False (C order, as np.save writes)",
                    "True",
                    "save it with np.save(path, np.ascontiguousarray(x))",
                )
            )
            return None
        if not shape_ok or not header.shape:
            want = "[N, D]" if rest is None else f"[N, {rest[0]}, {rest[1]}]"
            problems.add(Problem(name, "shape", want, str(list(header.shape))))
            return None
        headers.append(header)
    features, keypoints = (open_rows(h) for h in headers)
    if len(features) != len(keypoints):
        problems.add(
            Problem(
                layout.keypoints,
                "rows",
                f"{len(features)} (as {layout.feature})",
                str(len(keypoints)),
                "write the directory again",
            )
        )
        return None
    return SideArrays(features, keypoints)


RowSink = Callable[[str, int, Any], None]


@dataclass
class MetadataHead:
    """What a metadata file says besides its rows."""

    num_samples: int | None = None
    feature_dim: int | None = None
    standard_info: dict[str, Any] | None = None
    counts: dict[str, int] = field(default_factory=dict)  # items of each row list


def read_metadata(
    folder: Path, side: Side, rows: int, dim: int, problems: Problems, sink: RowSink
) -> MetadataHead:
    """Walk `<side>_metadata.json`, checking each row; `sink(key, index, value)` gets
    `standard_info` (front) and each checked row of `metadata` and of the four number lists,
    in file order."""
    layout = LAYOUTS[side]
    name = layout.metadata
    head = MetadataHead()
    seen = []
    for key, value in object_items(folder / name):
        seen.append(key)
        if key not in layout.metadata_keys:
            problems.add(
                Problem(
                    name, key, "no such key", "present", "the seed's trainers ignore it; remove it"
                )
            )
            continue
        if isinstance(value, ListItems) != (key in ("metadata", *ROW_LISTS)):
            problems.add(
                Problem(
                    name, key, "a list" if key in ROW_LISTS else "not a list", type(value).__name__
                )
            )
            continue
        if key in ("num_samples", "feature_dim"):
            if not _is_int(value):
                problems.add(Problem(name, key, "an integer", repr(value)))
            setattr(head, key, value)
        elif key == "standard_info":
            _check_standard_info(name, value, problems)
            head.standard_info = value if isinstance(value, dict) else None
            if head.standard_info is not None:
                sink(key, 0, value)
        else:
            count = 0
            check = _row_check(side, key)
            for index, item in enumerate(value):
                count += 1
                actual = check(item)
                if actual is not None:
                    problems.add(Problem(name, f"{key}[{index}]", _EXPECTED[key], actual))
                elif index < rows:
                    sink(key, index, item)
            head.counts[key] = count
    for key in layout.metadata_keys:
        if key not in seen:
            problems.add(Problem(name, key, "present", "missing"))
    if head.num_samples is not None and head.num_samples != rows:
        problems.add(
            Problem(
                name,
                "num_samples",
                f"{rows} (rows of {layout.feature})",
                str(head.num_samples),
                "write the directory again",
            )
        )
    if head.feature_dim is not None and head.feature_dim != dim:
        problems.add(
            Problem(
                name, "feature_dim", f"{dim} (columns of {layout.feature})", str(head.feature_dim)
            )
        )
    for key, count in head.counts.items():
        empty_originals = key == "landmarks_3d_original" and count == 0
        if count != rows and not empty_originals:
            problems.add(
                Problem(
                    name,
                    key,
                    f"{rows} rows (as {layout.feature})",
                    f"{count} rows",
                    "write the directory again",
                )
            )
    return head


_EXPECTED = {
    "metadata": "an object with person_name, image_path (strings), image_size [w, h]",
    "poses": "3 finite numbers",
    "boxes": "4 finite numbers",
    "landmarks_2d": "[5][2] finite numbers",
    "landmarks_3d_original": "[5][3] finite numbers",
}


def _row_check(side: Side, key: str) -> Callable[[Any], str | None]:
    if key == "metadata":
        keys = LAYOUTS[side].row_keys
        return lambda row: _check_row(row, keys)
    shape = ROW_LISTS[key]
    return lambda value: _check_numbers(value, shape)


def _check_row(row: Any, keys: tuple[str, ...]) -> str | None:
    if not isinstance(row, dict):
        return type(row).__name__
    missing = [k for k in keys if k not in row]
    if missing:
        return f"no {', '.join(missing)}"
    for key in ("person_name", "image_path", "frame_index"):
        if key in keys and not isinstance(row[key], str):
            return f"{key} = {row[key]!r}"
    if not row["person_name"] or not row["image_path"]:
        return "an empty person_name or image_path"
    size = row["image_size"]
    if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) and v > 0 for v in size)):
        return f"image_size = {size!r}"
    for key in ("person_name", "image_path"):
        try:
            row[key].encode("utf-8")
        except UnicodeEncodeError:
            return f"{key} {row[key]!r} is not valid UTF-8"
    return None


def _check_numbers(value: Any, shape: tuple[int, ...]) -> str | None:
    if len(shape) == 1:
        if not isinstance(value, list) or len(value) != shape[0]:
            return _short(value)
        for v in value:
            if not _is_number(v):
                return _short(value)
            if not math.isfinite(v):
                return f"{v} (NaN or infinite)"
        return None
    if not isinstance(value, list) or len(value) != shape[0]:
        return _short(value)
    for item in value:
        actual = _check_numbers(item, shape[1:])
        if actual is not None:
            return actual
    return None


def _check_standard_info(name: str, info: Any, problems: Problems) -> None:
    if not isinstance(info, dict) or [k for k in STANDARD_INFO_KEYS if k not in info]:
        problems.add(
            Problem(
                name,
                "standard_info",
                f"an object with {', '.join(STANDARD_INFO_KEYS)}",
                _short(info),
            )
        )
        return
    scale = info["standard_scale"]
    if not _is_number(scale) or not math.isfinite(scale) or scale <= 0:
        problems.add(
            Problem(name, "standard_info.standard_scale", "a positive number", repr(scale))
        )


def read_failed(folder: Path, side: Side, problems: Problems) -> dict[str, Any]:
    """`<side>_failed_images.json` checked: counts and the four lists of entries."""
    layout = LAYOUTS[side]
    name = layout.failed
    found: dict[str, Any] = {}
    for key, value in object_items(folder / name):
        found[key] = list(value) if isinstance(value, ListItems) else value
    for key in layout.failed_keys:
        if key not in found:
            problems.add(Problem(name, key, "present", "missing"))
        elif key != "failed_details" and not _is_int(found[key]):
            problems.add(Problem(name, key, "an integer", _short(found[key])))
    details = found.get("failed_details")
    if not isinstance(details, dict):
        problems.add(
            Problem(name, "failed_details", "an object of the four kinds", _short(details))
        )
        return found
    for kind in FAILURE_KINDS:
        entries = details.get(kind, [])
        if not isinstance(entries, list):
            problems.add(Problem(name, f"failed_details.{kind}", "a list", _short(entries)))
            continue
        for i, entry in enumerate(entries):
            keys = (
                ("path", "person_name", "error")
                if kind in KINDS_WITH_ERROR
                else ("path", "person_name")
            )
            if not (isinstance(entry, dict) and all(isinstance(entry.get(k), str) for k in keys)):
                problems.add(
                    Problem(
                        name,
                        f"failed_details.{kind}[{i}]",
                        f"an object with {', '.join(keys)} (strings)",
                        _short(entry),
                    )
                )
    for kind in details:
        if kind not in FAILURE_KINDS:
            problems.add(
                Problem(
                    name, f"failed_details.{kind}", "one of " + ", ".join(FAILURE_KINDS), "present"
                )
            )
    return found


def failures(found: dict[str, Any]) -> Iterator[tuple[str, dict[str, str]]]:
    """(kind, entry) of a checked failed-images object, kind by kind in file order."""
    details = found.get("failed_details")
    if isinstance(details, dict):
        for kind in FAILURE_KINDS:
            for entry in details.get(kind, []) or []:
                yield kind, entry


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
