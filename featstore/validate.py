"""Check a trainer JSON (SPEC §4) and answer the seed's troubleshooting list (Q1-Q3).

    report = validate_json(Path("valid_images.json"))
    for problem in report.problems:
        print(problem.format())

Every problem has a code whose prefix names the seed's question it answers:

    Q1-dim-mismatch      a feature vector's length differs from feature_dim, or
                         dinov2_model makes features of another dim
    Q1-unknown-model     dinov2_model is not a DINOv2 model featstore knows
    Q1-mixed-dims        identities disagree on the feature dim
    Q1-mixed-models      identities name different models (of the same dim)
    Q2-missing-path      an image path does not name an existing file
    Q2-backslash         a path uses '\\' separators
    Q2-base-dir          no path of the file resolves (a moved file or a wrong --base-dir)
    Q3-empty             the file is empty or only whitespace
    Q3-encoding          not UTF-8 (byte offset given), a UTF-8 BOM, or UTF-16/32
    Q3-json-syntax       malformed JSON (line and column given)
    Q3-top-level         the top level is not an object keyed by identity
    Q3-duplicate-identity  an identity appears twice (json.load keeps the last silently)
    Q3-unknown-format    an identity has neither the new nor the old format's fields
    Q3-mixed-format      identities of the new and the old format in one file
    Q3-missing-field     a field of the format is absent
    Q3-type              a field has the wrong JSON type
    Q3-shape             a list has the wrong shape (e.g. landmarks not [5][2]), no frames
    Q3-non-finite        NaN or +-Infinity where a number is expected
    Q3-count             valid_video_images / total_video_images disagree with video_data

`\\` separators are a problem (exit 1), not a note: featstore's readers accept them, but
the seed's trainer on Linux reads `a\\b.jpg` as one file name, and the seed asks for `/`.

How the file is read: the top-level object is streamed one identity at a time with ijson
(yajl2 C backend), so memory holds one identity, not the file. yajl rejects the tokens
`NaN` / `Infinity` that Python's `json.dump` writes and `json.load` accepts; when it
rejects a file, the whole file is parsed again with the standard library, which accepts
those tokens (so they are reported per identity and field) and gives the line and column
of real syntax errors. That fallback holds the whole file in memory; it is taken only for
broken files and files with non-finite numbers.

Per-frame problems of one identity merge into one line per (code, field, expected): a file
whose 10,000 frames all miss `spherical_angles` says so once per identity, with a count.
"""

from __future__ import annotations

import codecs
import dataclasses
import functools
import json
import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import IO, Any, Literal

import ijson

from featstore.errors import InputError

Format = Literal["new", "old", "unknown"]

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

# Fields that mark an identity as new-format; `video_images` marks the old one.
_NEW_KEYS = (
    "face_features",
    "video_data",
    "face_landmarks_2d",
    "face_landmarks_3d",
    "face_box",
    "feature_dim",
    "dinov2_model",
)
_FACE_SHAPES = {"face_landmarks_2d": (5, 2), "face_landmarks_3d": (5, 3), "face_box": (4,)}
_FRAME_SHAPES = {
    "landmarks_2d": (5, 2),
    "landmarks_3d": (5, 3),
    "box": (4,),
    "spherical_angles": (5,),
    "avg_angle": (),  # one number
}
_FRAME_INDEX = re.compile(r"^(video_data|video_images)\[\d+\]")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
_NUMBER_TYPES = {int, float}  # type() is compared, so bool (an int subclass) is not a number
_SNIPPET = 20  # characters shown either side of a syntax error


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong with the file.

    Attributes:
        code: e.g. "Q1-dim-mismatch"; the prefix is the seed's troubleshooting question.
        identity: the top-level key concerned, or None for the whole file.
        field: a JSON path inside the identity (`video_data[3].features`, or
            `video_data[*].features` for several frames), or None.
        expected: what SPEC §4 asks for.
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
        who = "(file)" if self.identity is None else _quote_identity(self.identity)
        where = f"{self.field}: " if self.field else ""
        return f"{who}: {where}expected {self.expected}, found {self.found} [{self.code}]"


@dataclasses.dataclass
class ValidationReport:
    """What `validate_json` found.

    Attributes:
        path: the file checked.
        format: "new" or "old" (of the first identity whose format is recognisable), or
            "unknown" (unreadable file, or no identity of either format).
        identities: distinct identities read.
        frames: frames listed (`video_data` or `video_images` entries).
        dim: the feature dim of the first new-format identity that has one.
        model: the dinov2_model of the first new-format identity that names one.
        problems: the problems kept (the first `max_problems`).
        problem_count: all problems found, kept or not.
        counts_by_code: problem_count split by code.
    """

    path: Path
    format: Format = "unknown"
    identities: int = 0
    frames: int = 0
    dim: int | None = None
    model: str | None = None
    problems: list[Problem] = dataclasses.field(default_factory=list)
    problem_count: int = 0
    counts_by_code: dict[str, int] = dataclasses.field(default_factory=dict)

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
        text = f"{self.format} format, {_plural(self.identities, 'identity', 'identities')}, "
        text += _plural(self.frames, "frame", "frames")
        return text + (f", dim {self.dim}" if self.dim is not None else "")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (paths as strings)."""
        out = dataclasses.asdict(self)
        out["path"] = str(self.path)
        out["ok"] = self.ok
        out["problems_truncated"] = self.problem_count > len(self.problems)
        out["hints"] = self.hints
        return out


def validate_json(
    path: Path, *, check_paths: bool = True, max_problems: int | None = None
) -> ValidationReport:
    """Check a trainer JSON against SPEC §4; never raises for a bad *file content*.

    Args:
        path: the JSON file.
        check_paths: check that every image path names an existing file (relative paths
            against the JSON file's folder, absolute ones as they are).
        max_problems: keep at most this many problems in the report (all are counted);
            None keeps all.

    Raises:
        InputError: the file cannot be opened or read.
    """
    if max_problems is not None and max_problems < 0:
        raise ValueError(f"max_problems must be None or >= 0, got {max_problems}")
    path = Path(path)
    try:
        with path.open("rb") as raw:
            return _Validator(path, check_paths, max_problems).run(raw)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc


class _NotUtf8(Exception):
    def __init__(self, offset: int, line: int, bad: bytes) -> None:
        super().__init__(offset)
        self.offset, self.line, self.bad = offset, line, bad


class _Utf8Reader:
    """Hands a file's bytes to ijson after checking, chunk by chunk, that they are UTF-8.

    yajl checks UTF-8 inside strings only and names no position; this names the byte.
    """

    def __init__(self, raw: IO[bytes], offset: int) -> None:
        self._raw = raw
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._offset = offset  # bytes handed out so far, from the start of the file
        self._lines = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._raw.read(size)
        pending = len(self._decoder.getstate()[0])  # a character split by the last chunk
        try:
            self._decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            before = max(exc.start - pending, 0)
            line = self._lines + chunk.count(b"\n", 0, before) + 1
            bad = exc.object[exc.start : exc.end]
            raise _NotUtf8(self._offset - pending + exc.start, line, bad) from None
        self._offset += len(chunk)
        self._lines += chunk.count(b"\n")
        return chunk


class _IdentityProblems:
    """Problems of one identity; per-frame ones merge into one per (code, field, expected)."""

    def __init__(self) -> None:
        # key -> [first field, first found, message, count]
        self._groups: dict[tuple[str, str, str], list[Any]] = {}

    def add(
        self, code: str, field: str | None, expected: str, found: str, message: str = ""
    ) -> None:
        pattern = _FRAME_INDEX.sub(r"\1[*]", field) if field else ""
        group = self._groups.setdefault((code, pattern, expected), [field, found, message, 0])
        group[3] += 1

    def problems(self, identity: str, frames: int) -> list[Problem]:
        out = []
        for (code, pattern, expected), (field, found, message, count) in self._groups.items():
            if count > 1:
                field, found = pattern, f"{found} in {count} of {frames} frames, first {field}"
            out.append(Problem(code, identity, field, expected, found, message))
        return out


class _Validator:
    """One run over one file: the per-identity checks and what spans identities."""

    def __init__(self, path: Path, check_paths: bool, max_problems: int | None) -> None:
        self.report = ValidationReport(path)
        self._folder = path.resolve().parent
        self._check_paths = check_paths
        self._max = max_problems
        self._seen: set[str] = set()
        self._format_from = ""  # the identity that set report.format / dim / model
        self._dim_from = ""
        self._model_from = ""
        self._paths_checked = 0
        self._paths_found = 0
        self._first_missing: str | None = None

    # -- reading ---------------------------------------------------------------------

    def run(self, raw: IO[bytes]) -> ValidationReport:
        """Read the file: stream it when it is a UTF-8 object, else parse it whole."""
        start = self._check_encoding_start(raw.read(4))
        if start is None:
            return self.report
        raw.seek(start)
        first = _first_non_space(raw)
        if not first:
            found = "an empty file" if raw.seek(0, os.SEEK_END) == 0 else "only whitespace"
            return self._file_problem("Q3-empty", "a JSON object keyed by identity", found)
        raw.seek(start)
        if first != b"{":
            return self._walk(_parse_whole(raw, start))  # a syntax error or a wrong top level
        try:
            for name, value in ijson.kvitems(_Utf8Reader(raw, start), "", use_float=True):
                self._identity(name, value)
        except _NotUtf8 as exc:
            found = f"byte {exc.bad.hex(' ').upper()} at byte offset {exc.offset} (line {exc.line})"
            self._file_problem("Q3-encoding", "UTF-8 text", found)
        except ijson.JSONError:
            parsed = _parse_whole(raw, start)
            if isinstance(parsed, Problem):
                # Broken for Python too: keep what was streamed before the break, add where.
                self._add(parsed)
            else:
                # Python reads it (NaN, Infinity, huge numbers): check it all from the start.
                return _Validator(self.report.path, self._check_paths, self._max)._walk(parsed)
        return self._finish()

    def _check_encoding_start(self, head: bytes) -> int | None:
        """Where the JSON text starts (after a UTF-8 BOM), or None when it is not UTF-8."""
        if head.startswith(codecs.BOM_UTF8):
            message = "json.load on a file opened with encoding='utf-8' rejects it"
            self._file_problem("Q3-encoding", "UTF-8 without a BOM", "a UTF-8 BOM", message)
            return 3
        if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
            found = "UTF-32 text (BOM)"
        elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            found = "UTF-16 text (BOM)"
        elif b"\x00" in head:
            found = "NUL bytes at the start (UTF-16 or UTF-32 without a BOM?)"
        else:
            return 0
        self._file_problem("Q3-encoding", "UTF-8 text", found)
        return None

    def _walk(self, parsed: tuple[Any, list[str]] | Problem) -> ValidationReport:
        """Check a file parsed whole: (top-level value, repeated top-level keys)."""
        if isinstance(parsed, Problem):
            self._add(parsed)
            return self.report
        top, repeated = parsed
        if not isinstance(top, dict):
            found = _describe(top)
            return self._file_problem("Q3-top-level", "a JSON object keyed by identity", found)
        for name in repeated:
            self._duplicate(name)
        for name, value in top.items():
            self._identity(name, value)
        return self._finish()

    # -- problems --------------------------------------------------------------------

    def _add(self, problem: Problem) -> None:
        report = self.report
        report.problem_count += 1
        report.counts_by_code[problem.code] = report.counts_by_code.get(problem.code, 0) + 1
        if self._max is None or len(report.problems) < self._max:
            report.problems.append(problem)

    def _file_problem(
        self, code: str, expected: str, found: str, message: str = ""
    ) -> ValidationReport:
        self._add(Problem(code, None, None, expected, found, message))
        return self.report

    def _duplicate(self, name: str) -> None:
        self._add(
            Problem(
                "Q3-duplicate-identity",
                name,
                None,
                "each identity once",
                "a second entry",
                "json.load keeps only the last entry of a repeated key",
            )
        )

    def _finish(self) -> ValidationReport:
        if self._check_paths and self._paths_checked and not self._paths_found:
            found = f"none of {self._paths_checked} paths exists"
            found += _guess_base_dir(self._first_missing, self._folder)
            expected = f"paths relative to the JSON file's folder {self._folder}"
            self._file_problem("Q2-base-dir", expected, found)
        return self.report

    # -- one identity ----------------------------------------------------------------

    def _identity(self, name: str, value: Any) -> None:
        report = self.report
        if name in self._seen:
            self._duplicate(name)
        else:
            self._seen.add(name)
            report.identities += 1
        issues = _IdentityProblems()
        frames = 0
        if not isinstance(value, dict):
            issues.add("Q3-type", None, "an object", _describe(value))
        else:
            fmt = _format_of(value)
            if fmt == "unknown":
                keys = f"fields {', '.join(list(value)[:8])}" if value else "an empty object"
                expected = "face_features + video_data (new format) or video_images (old)"
                issues.add("Q3-unknown-format", None, expected, keys)
            elif report.format == "unknown":
                report.format, self._format_from = fmt, name
            elif fmt != report.format:
                expected = f"the {report.format} format, as identity {self._format_from}"
                issues.add("Q3-mixed-format", None, expected, f"the {fmt} format")
            if fmt == "new":
                frames = self._check_new(name, value, issues)
            elif fmt == "old":
                frames = self._check_old(value, issues)
        report.frames += frames
        for problem in issues.problems(name, frames):
            self._add(problem)

    def _check_old(self, obj: dict[str, Any], issues: _IdentityProblems) -> int:
        self._check_path(issues, "face_image_path", _require(issues, obj, "face_image_path"))
        images = _frame_list(issues, obj, "video_images", "an array of paths")
        for i, image in enumerate(images or ()):
            self._check_path(issues, f"video_images[{i}]", image)
        return len(images or ())

    def _check_new(self, name: str, obj: dict[str, Any], issues: _IdentityProblems) -> int:
        vectors: list[tuple[str, Any]] = []  # feature vectors, for the dim checks below
        self._check_path(issues, "face_image_path", _require(issues, obj, "face_image_path"))
        face = _require(issues, obj, "face_features")
        if face is not _MISSING:
            vectors.append(("face_features", face))
        for key, shape in _FACE_SHAPES.items():
            _check_numbers(issues, key, _require(issues, obj, key), shape)
        frames = _frame_list(issues, obj, "video_data", "an array of frame objects")
        for i, frame in enumerate(frames or ()):
            where = f"video_data[{i}]"
            if not isinstance(frame, dict):
                issues.add("Q3-type", where, "an object", _describe(frame))
                continue
            self._check_path(
                issues, f"{where}.image_path", _require(issues, frame, "image_path", where)
            )
            feats = _require(issues, frame, "features", where)
            if feats is not _MISSING:
                vectors.append((f"{where}.features", feats))
            for key, shape in _FRAME_SHAPES.items():
                _check_numbers(issues, f"{where}.{key}", _require(issues, frame, key, where), shape)
        _check_counts(issues, obj, None if frames is None else len(frames))
        for field, vector in vectors:
            _check_numbers(issues, field, vector, (None,))
        self._check_dims(name, obj, vectors, issues)
        return len(frames or ())

    def _check_dims(
        self,
        name: str,
        obj: dict[str, Any],
        vectors: list[tuple[str, Any]],
        issues: _IdentityProblems,
    ) -> None:
        """Q1: vector lengths vs feature_dim vs dinov2_model, and across identities."""
        declared = _require(issues, obj, "feature_dim")
        declared_dim: int | None = None
        if type(declared) is int and declared > 0:
            declared_dim = declared
        elif declared is not _MISSING:
            issues.add("Q3-type", "feature_dim", "an integer > 0", _describe(declared))
        lengths = Counter(len(v) for _, v in vectors if isinstance(v, list))
        dim: int | None
        if len(lengths) == 1:
            (dim,) = lengths
            if declared_dim is not None and declared_dim != dim:
                expected = f"{dim} (the length of every feature vector)"
                issues.add("Q1-dim-mismatch", "feature_dim", expected, str(declared_dim))
        else:
            # Vectors disagree (or there are none): feature_dim, when valid, is the reference.
            dim = (
                declared_dim
                if declared_dim is not None
                else max(lengths, key=lengths.__getitem__, default=None)
            )
            for field, vector in vectors:
                if isinstance(vector, list) and dim is not None and len(vector) != dim:
                    expected = f"{dim} numbers (feature_dim)"
                    issues.add("Q1-dim-mismatch", field, expected, f"{len(vector)} numbers")
        model = self._check_model(_require(issues, obj, "dinov2_model"), dim, issues)
        report = self.report
        if dim is not None and report.dim is None:
            report.dim, self._dim_from = dim, name
        elif dim is not None and dim != report.dim:
            expected = f"{report.dim}, as identity {self._dim_from}"
            issues.add("Q1-mixed-dims", "feature_dim", expected, str(dim))
            return  # a different dim already says the models differ
        if model is not None and report.model is None:
            report.model, self._model_from = model, name
        elif model is not None and model != report.model:
            expected = f"{report.model}, as identity {self._model_from}"
            issues.add("Q1-mixed-models", "dinov2_model", expected, model)

    @staticmethod
    def _check_model(model: Any, dim: int | None, issues: _IdentityProblems) -> str | None:
        """dinov2_model when it is a known model of `dim`, else None (after reporting)."""
        if model is _MISSING:
            return None
        known = _model_dims()
        if type(model) is not str or model not in known:
            expected = f"one of {', '.join(known)}"
            code = "Q1-unknown-model" if type(model) is str else "Q3-type"
            issues.add(code, "dinov2_model", expected, _describe(model))
            return None
        if dim is not None and known[model] != dim:
            same = ", ".join(m for m, d in known.items() if d == dim) or "no DINOv2 model"
            expected = f"a model of {dim}-dim features ({same})"
            found = f"{model} ({known[model]}-dim)"
            message = "the trainer builds its layers for the model's dim"
            issues.add("Q1-dim-mismatch", "dinov2_model", expected, found, message)
            return None  # so it is not the reference other identities are compared with
        return model

    def _check_path(self, issues: _IdentityProblems, field: str, value: Any) -> None:
        """Q2: a non-empty string with '/' separators naming an existing file."""
        if value is _MISSING:
            return
        if type(value) is not str or not value:
            issues.add("Q3-type", field, "a non-empty path string", _describe(value))
            return
        if "\\" in value:
            message = (
                "featstore accepts '\\', but the seed's trainer on Linux reads it as part of a name"
            )
            issues.add("Q2-backslash", field, "'/' separators", _describe(value), message)
        if not self._check_paths:
            return
        self._paths_checked += 1
        resolved = self._folder / value.replace("\\", "/")  # an absolute path replaces the folder
        if resolved.is_file():
            self._paths_found += 1
            return
        self._first_missing = self._first_missing or value
        why = "a folder" if resolved.is_dir() else "no such file"
        if _WINDOWS_DRIVE.match(value) and os.name != "nt":
            why += ", a Windows drive path"
        issues.add(
            "Q2-missing-path",
            field,
            "an existing file",
            f"{_describe(value)} -> {resolved} ({why})",
        )


def _parse_whole(raw: IO[bytes], start: int) -> tuple[Any, list[str]] | Problem:
    """Parse the file with the standard library: (top value, repeated top-level keys)."""
    raw.seek(start)
    data = raw.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        bad = data[exc.start : exc.end].hex(" ").upper()
        found = f"byte {bad} at byte offset {start + exc.start} (line {line})"
        return Problem("Q3-encoding", None, None, "UTF-8 text", found)
    del data  # the text is all that is needed from here on
    repeated: list[str] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # Called innermost object first, so the last call is the top-level object's.
        obj = dict(pairs)
        counts = Counter(key for key, _ in pairs) if len(obj) < len(pairs) else Counter()
        repeated[:] = [key for key, n in counts.items() for _ in range(n - 1)]
        return obj

    try:
        return json.loads(text, object_pairs_hook=pairs_hook), repeated
    except json.JSONDecodeError as exc:
        snippet = text[max(exc.pos - _SNIPPET, 0) : exc.pos + _SNIPPET]
        found = f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
        found += f", near {json.dumps(snippet, ensure_ascii=False)}"
        if text.find("]", exc.pos) < 0 and text.find("}", exc.pos) < 0:
            # Nothing is closed after the error: the text stops inside the document.
            found += " (the file stops inside the document: truncated?)"
    except ValueError as exc:  # an integer of more than 4300 digits
        found = str(exc).split(";")[0]
    return Problem("Q3-json-syntax", None, None, "valid JSON", found)


# -- helpers ---------------------------------------------------------------------------

_MISSING: Any = object()


def _require(issues: _IdentityProblems, obj: dict[str, Any], key: str, where: str = "") -> Any:
    """obj[key], or _MISSING after reporting its absence."""
    if key in obj:
        return obj[key]
    field = f"{where}.{key}" if where else key
    issues.add("Q3-missing-field", field, f"a field '{key}'", "no such field")
    return _MISSING


def _frame_list(
    issues: _IdentityProblems, obj: dict[str, Any], key: str, kind: str
) -> list[Any] | None:
    """obj[key] when it is a list (an empty one reported), else None (after reporting)."""
    frames = _require(issues, obj, key)
    if frames is _MISSING:
        return None
    if not isinstance(frames, list):
        issues.add("Q3-type", key, kind, _describe(frames))
        return None
    if not frames:
        issues.add("Q3-shape", key, "at least one frame", "an empty array")
    return frames


def _check_counts(issues: _IdentityProblems, obj: dict[str, Any], frames: int | None) -> None:
    """The optional frame counts: integers, valid == len(video_data) <= total."""
    counts = {}
    for key in ("total_video_images", "valid_video_images"):
        if key in obj:  # optional: the seed's own files lack them
            value = obj[key]
            if type(value) is int and value >= 0:
                counts[key] = value
            else:
                issues.add("Q3-type", key, "an integer >= 0", _describe(value))
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


def _check_numbers(
    issues: _IdentityProblems, field: str, value: Any, shape: tuple[int | None, ...]
) -> None:
    """Report `value` unless it is finite numbers of `shape` (() a number; None any length)."""
    if value is _MISSING:
        return
    issue = _numbers_issue(value, shape)
    if issue:
        code, found, where = issue
        issues.add(code, field, _shape_text(shape), f"{found} at {where}" if where else found)


def _numbers_issue(value: Any, shape: tuple[int | None, ...]) -> tuple[str, str, str] | None:
    """(code, found, index path like "[2][1]") of the first way `value` misses `shape`."""
    if not shape:
        if type(value) not in _NUMBER_TYPES:
            return "Q3-type", _describe(value), ""
        return None if _all_finite([value]) else ("Q3-non-finite", _describe(value), "")
    if not isinstance(value, list):
        return "Q3-type", _describe(value), ""
    if shape[0] is not None and len(value) != shape[0]:
        return "Q3-shape", _describe(value), ""
    if len(shape) == 1:
        # Vectors hold hundreds of numbers: check them in C first, in Python on failure.
        if set(map(type, value)) <= _NUMBER_TYPES and _all_finite(value):
            return None
        for i, number in enumerate(value):
            if type(number) not in _NUMBER_TYPES:
                return "Q3-type", _describe(number), f"[{i}]"
        bad = [i for i, number in enumerate(value) if not _all_finite([number])]
        more = f" (and {len(bad) - 1} more non-finite)" if len(bad) > 1 else ""
        return "Q3-non-finite", _describe(value[bad[0]]), f"[{bad[0]}]{more}"
    for i, row in enumerate(value):
        issue = _numbers_issue(row, shape[1:])
        if issue:
            return issue[0], issue[1], f"[{i}]{issue[2]}"
    return None


def _all_finite(values: list[Any]) -> bool:
    try:
        return all(map(math.isfinite, values))
    except OverflowError:  # an integer beyond float's range
        return False


def _shape_text(shape: tuple[int | None, ...]) -> str:
    if not shape:
        return "a finite number"
    if shape == (None,):
        return "an array of finite numbers"
    return "".join(f"[{n}]" for n in shape) + " finite numbers"


def _describe(value: Any) -> str:
    """A short rendering of a JSON value for a `found` text."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int) and not _all_finite([value]):
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


def _quote_identity(name: str) -> str:
    """The identity as written, quoted (JSON) when it would be ambiguous on a line."""
    plain = name and name.isprintable() and not any(c.isspace() or c in ':"' for c in name)
    return name if plain else json.dumps(name, ensure_ascii=False)


def _plural(n: int, singular: str, plural: str) -> str:
    return f"{n} {singular if n == 1 else plural}"


def _format_of(obj: dict[str, Any]) -> Format:
    """SPEC §4: new when it carries the new format's fields, old with video_images."""
    if any(key in obj for key in _NEW_KEYS):
        return "new"
    return "old" if "video_images" in obj else "unknown"


def _first_non_space(raw: IO[bytes]) -> bytes:
    """The first byte that is not JSON whitespace, or b"" at the end of the file."""
    while chunk := raw.read(1 << 16):
        stripped = chunk.lstrip(b" \t\r\n")
        if stripped:
            return stripped[:1]
    return b""


def _guess_base_dir(first_missing: str | None, folder: Path) -> str:
    """Where a missing relative path does resolve: the folder's ancestors or the cwd."""
    if not first_missing:
        return ""
    relative = first_missing.replace("\\", "/")
    if Path(relative).is_absolute():
        return ""
    for candidate in [*list(folder.parents)[:5], Path.cwd()]:
        if (candidate / relative).is_file():
            return f"; they resolve against {candidate} (the --base-dir of the export?)"
    return ""


@functools.cache
def _model_dims() -> dict[str, int]:
    """DINOv2 model name -> feature dim, from featstore.dinov2 (imported late: it loads torch)."""
    from featstore.dinov2_specs import MODEL_SPECS

    return {name: spec.embed_dim for name, spec in MODEL_SPECS.items()}
