"""What `validate` reports: problems with their codes and hints, and the checks of one
identity's fields (types, shapes, finite numbers, counts) that produce them."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from featstore.errors import plural
from featstore.trainer_json.formats import IdentityFormat

HINTS: dict[str, str] = {
    "Q1": (
        "all features must come from one DINOv2 model, and the trainer must use that "
        "model's dim: check feature_dim and dinov2_model, then re-export the JSON from "
        "a single model with featstore."
    ),
    "Q2": (
        "relative paths resolve against the JSON file's folder: keep the JSON where it was "
        "exported, or export again with --base-dir set to the images' common parent; "
        "write '/' separators."
    ),
    "Q3": (
        "the trainer reads one JSON object keyed by identity, in the new format "
        "(face_features, video_data, ...) or the old one (face_image_path, video_images); "
        "re-export the file rather than mending it by hand."
    ),
}


FRAME_INDEX = re.compile(r"^(video_data|video_images)\[\d+\]")


NUMBER_TYPES = {int, float}  # type() is compared, so bool (an int subclass) is not a number


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong with the file.

    Attributes:
        code: e.g. "Q1-dim-mismatch"; the prefix is the seed's troubleshooting question.
        identity: the top-level key concerned, or None for the whole file.
        field: a JSON path inside the identity (`video_data[3].features`, or
            `video_data[*].features` for several frames), or None.
        expected: what docs/formats.md asks for.
        found: what the file holds.
        message: why it matters, when the code alone does not say.
    """

    code: str
    identity: str | None
    field: str | None
    expected: str
    found: str
    message: str = ""

    def format(self) -> str:
        """One line: `identity: field: expected X, found Y [code]`."""
        who = "(file)" if self.identity is None else quote_identity(self.identity)
        where = f"{self.field}: " if self.field else ""
        return f"{who}: {where}expected {self.expected}, found {self.found} [{self.code}]"


@dataclasses.dataclass
class ValidationReport:
    """What `validate_json` found.

    Attributes:
        path: the file checked.
        format: "new", "3d" or "old" (of the first identity whose format is recognisable), or
            "unknown" (unreadable file, or no identity of either format).
        identities: distinct identities read.
        frames: frames listed (`video_data` or `video_images` entries).
        dim: the feature dim of the first new-format identity that has one.
        model: the dinov2_model of the first new-format identity that names one.
        problems: the problems kept (the first `max_problems`).
        problem_count: all problems found, kept or not.
        counts_by_code: problem_count split by code.
        warnings: what may be intended but is worth a look (paths that resolve against
            another folder than the file's); `ok` ignores them, `--strict` does not.
    """

    path: Path
    format: IdentityFormat = "unknown"
    identities: int = 0
    frames: int = 0
    dim: int | None = None
    model: str | None = None
    problems: list[Problem] = dataclasses.field(default_factory=list)
    problem_count: int = 0
    counts_by_code: dict[str, int] = dataclasses.field(default_factory=dict)
    warnings: list[Problem] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return self.problem_count == 0

    @property
    def hints(self) -> dict[str, str]:
        """The seed's remedies ("Q1".."Q3") for the questions the problems fall under."""
        groups = sorted({code.split("-", 1)[0] for code in self.counts_by_code})
        return {group: HINTS[group] for group in groups}

    def describe(self) -> str:
        """E.g. `new format, 3 identities, 12 frames, dim 768`."""
        text = f"{self.format} format, {plural(self.identities, 'identity', 'identities')}, "
        text += plural(self.frames, "frame", "frames")
        return text + (f", dim {self.dim}" if self.dim is not None else "")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (paths as strings)."""
        out = dataclasses.asdict(self)
        out["path"] = str(self.path)
        out["ok"] = self.ok
        out["problems_truncated"] = self.problem_count > len(self.problems)
        out["hints"] = self.hints
        return out


class IdentityProblems:
    """Problems of one identity; per-frame ones merge into one per (code, field, expected)."""

    def __init__(self, identity: str = "") -> None:
        self.identity = identity
        # key -> [first field, first found, message, count]
        self._groups: dict[tuple[str, str, str], list[Any]] = {}

    def add(
        self, code: str, field: str | None, expected: str, found: str, message: str = ""
    ) -> None:
        pattern = FRAME_INDEX.sub(r"\1[*]", field) if field else ""
        group = self._groups.setdefault((code, pattern, expected), [field, found, message, 0])
        group[3] += 1

    def problems(self, identity: str, frames: int) -> list[Problem]:
        out = []
        for (code, pattern, expected), (field, found, message, count) in self._groups.items():
            if count > 1:
                field, found = pattern, f"{found} in {count} of {frames} frames, first {field}"
            out.append(Problem(code, identity, field, expected, found, message))
        return out


MISSING: Any = object()


def require(issues: IdentityProblems, obj: dict[str, Any], key: str, where: str = "") -> Any:
    """obj[key], or MISSING after reporting its absence."""
    if key in obj:
        return obj[key]
    field = f"{where}.{key}" if where else key
    issues.add("Q3-missing-field", field, f"a field '{key}'", "no such field")
    return MISSING


def frame_list(
    issues: IdentityProblems, obj: dict[str, Any], key: str, kind: str
) -> list[Any] | None:
    """obj[key] when it is a list (an empty one reported), else None (after reporting)."""
    frames = require(issues, obj, key)
    if frames is MISSING:
        return None
    if not isinstance(frames, list):
        issues.add("Q3-type", key, kind, describe(frames))
        return None
    if not frames:
        issues.add("Q3-shape", key, "at least one frame", "an empty array")
    return frames


def check_counts(issues: IdentityProblems, obj: dict[str, Any], frames: int | None) -> None:
    """The optional frame counts: integers, valid == len(video_data) <= total."""
    counts = {}
    for key in ("total_video_images", "valid_video_images"):
        if key in obj:  # optional: the seed's own files lack them
            value = obj[key]
            if type(value) is int and value >= 0:
                counts[key] = value
            else:
                issues.add("Q3-type", key, "an integer >= 0", describe(value))
    valid = counts.get("valid_video_images")
    if frames is None:
        return  # video_data is missing or broken: reported already, nothing to compare
    if valid is not None and valid != frames:
        expected = f"{frames} (the length of video_data)"
        issues.add("Q3-count", "valid_video_images", expected, str(valid))
    total = counts.get("total_video_images")
    if total is not None and total < frames:
        expected = f"at least {frames} (the length of video_data)"
        issues.add("Q3-count", "total_video_images", expected, str(total))


def check_numbers(
    issues: IdentityProblems, field: str, value: Any, shape: tuple[int | None, ...]
) -> None:
    """Report `value` unless it is finite numbers of `shape` (() a number; None any length)."""
    if value is MISSING:
        return
    issue = numbers_issue(value, shape)
    if issue:
        code, found, where = issue
        issues.add(code, field, shape_text(shape), f"{found} at {where}" if where else found)


def numbers_issue(value: Any, shape: tuple[int | None, ...]) -> tuple[str, str, str] | None:
    """(code, found, index path like "[2][1]") of the first way `value` misses `shape`."""
    if not shape:
        if type(value) not in NUMBER_TYPES:
            return "Q3-type", describe(value), ""
        return None if all_finite([value]) else ("Q3-non-finite", describe(value), "")
    if not isinstance(value, list):
        return "Q3-type", describe(value), ""
    if shape[0] is not None and len(value) != shape[0]:
        return "Q3-shape", describe(value), ""
    if len(shape) == 1:
        # Vectors hold hundreds of numbers: check them in C first, in Python on failure.
        if set(map(type, value)) <= NUMBER_TYPES and all_finite(value):
            return None
        for i, number in enumerate(value):
            if type(number) not in NUMBER_TYPES:
                return "Q3-type", describe(number), f"[{i}]"
        bad = [i for i, number in enumerate(value) if not all_finite([number])]
        more = f" (and {len(bad) - 1} more non-finite)" if len(bad) > 1 else ""
        return "Q3-non-finite", describe(value[bad[0]]), f"[{bad[0]}]{more}"
    for i, row in enumerate(value):
        issue = numbers_issue(row, shape[1:])
        if issue:
            return issue[0], issue[1], f"[{i}]{issue[2]}"
    return None


def all_finite(values: list[Any]) -> bool:
    """True when every number is finite as a float32 (what the trainer and the store hold).

    3.5e38 is a finite float64 but not a float32: import-json and FeatureDataset refuse
    it, so validate reports it.
    """
    try:
        wide = np.asarray(values, dtype=np.float64)
    except OverflowError:  # an integer beyond float's range
        return False
    with np.errstate(over="ignore"):
        return bool(np.isfinite(wide.astype(np.float32)).all())


def shape_text(shape: tuple[int | None, ...]) -> str:
    if not shape:
        return "a finite number"
    if shape == (None,):
        return "an array of finite numbers"
    return "".join(f"[{n}]" for n in shape) + " finite numbers"


def describe(value: Any) -> str:
    """A short rendering of a JSON value for a `found` text."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int) and not all_finite([value]):
        return f"an integer of {value.bit_length()} bits (beyond float range)"
    if isinstance(value, int | float):
        return json.dumps(value)  # NaN and Infinity as Python's json writes them
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return json.dumps(shown, ensure_ascii=False)
    if isinstance(value, list):
        return f"an array of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def quote_identity(name: str) -> str:
    """The identity as written, quoted (JSON) when it would be ambiguous on a line."""
    plain = name and name.isprintable() and not any(c.isspace() or c in ':"' for c in name)
    return name if plain else json.dumps(name, ensure_ascii=False)


@functools.cache
def model_dims() -> dict[str, int]:
    """DINOv2 model name -> feature dim (imported late: the specs module is small, torch is not)."""
    from featstore.extraction.dinov2_specs import MODEL_SPECS

    return {name: spec.embed_dim for name, spec in MODEL_SPECS.items()}
