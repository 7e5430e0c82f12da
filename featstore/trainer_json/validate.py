"""Check a trainer JSON (docs/formats.md) and answer the seed's troubleshooting list (Q1-Q3).

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
    Q3-identity-name     an identity key that is empty or not valid Unicode (a lone
                         surrogate, as json.dump writes for a file name that is not UTF-8)
    Q3-unknown-format    an identity has neither the new nor the old format's fields
    Q3-mixed-format      identities of the new and the old format in one file
    Q3-missing-field     a field of the format is absent
    Q3-type              a field has the wrong JSON type
    Q3-shape             a list has the wrong shape (e.g. landmarks not [5][2]), no frames
    Q3-non-finite        NaN or +-Infinity where a number is expected
    Q3-count             valid_video_images / total_video_images disagree with video_data

The seed's 3D file (`valid_images_3d.json`, docs/formats.md) is checked as the "3d" format: an
identity that carries a pose (`face_euler_angles`, `face_rotation_matrix`, or frames with
`euler_angles` / `rotation_matrix`) must carry all of it, `[3]` angles and `[3][3]`
matrices, and its frames need no `spherical_angles` / `avg_angle`. A file mixing 3D and
plain new-format identities is `Q3-mixed-format`.

A UTF-8 BOM is a problem (`Q3-encoding`, exit 1), and the rest of the file is checked after
it: featstore's readers skip it (`json_stream.bom_length`, the one rule), but the trainer's
`json.load` on a file opened as UTF-8 rejects it.

`\\` separators are a problem (exit 1), not a note: featstore's readers accept them, but
the seed's trainer on Linux reads `a\\b.jpg` as one file name, and the seed asks for `/`.

How the file is read: the top-level object is read one identity at a time by
`json_stream` (the reader import-json and FeatureDataset use), so memory holds one
identity, not the file, whatever is in it. `NaN` / `Infinity` tokens (which Python's
`json.dump` writes) are parsed within their identity and reported per field; a syntax
error is reported with its line and column, after the identities before it were checked.
A top level that is not an object (no identities to stream) is parsed whole, to say what
it is.

Per-frame problems of one identity merge into one line per (code, field, expected): a file
whose 10,000 frames all miss `spherical_angles` says so once per identity, with a count.
"""

from __future__ import annotations

import codecs
import os
import re
from collections import Counter
from pathlib import Path
from typing import IO, Any

from featstore.errors import InputError
from featstore.store.fields import JSON_FORMATS, FrameField
from featstore.trainer_json.formats import identity_format
from featstore.trainer_json.json_reading import (
    first_non_space,
    guess_base_dir,
    parse_whole,
    text_problem,
)
from featstore.trainer_json.json_stream import JsonTextError, Member, bom_length, read_members
from featstore.trainer_json.problems import (
    MISSING,
    IdentityProblems,
    Problem,
    ValidationReport,
    check_counts,
    check_numbers,
    describe,
    frame_list,
    model_dims,
    require,
)


def _shapes(keys: dict[str, FrameField]) -> dict[str, tuple[int, ...]]:
    """JSON key -> shape, but the features (checked apart, against the identity's dim)."""
    return {key: field.shape for key, field in keys.items() if field.name != "features"}


# Per format: the shapes of the frontal image's values and of a frame's, by JSON key.
_FACE_SHAPES = {name: _shapes(JSON_FORMATS[name].face_keys()) for name in ("new", "3d")}
_FRAME_SHAPES = {name: _shapes(JSON_FORMATS[name].frame_keys()) for name in ("new", "3d")}
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


def validate_json(
    path: Path,
    *,
    check_paths: bool = True,
    max_problems: int | None = None,
    base_dir: Path | None = None,
) -> ValidationReport:
    """Check a trainer JSON against docs/formats.md; never raises for a bad *file content*.

    Args:
        path: the JSON file.
        check_paths: check that every image path names an existing file (relative paths
            against the JSON file's folder, absolute ones as they are).
        max_problems: keep at most this many problems in the report (all are counted);
            None keeps all.
        base_dir: resolve relative paths against it instead of the JSON file's folder.

    Paths that do not name files are one problem per cause (no such file, a folder, a
    Windows drive path), not one per identity. When no `base_dir` is given and every
    missing path of a new-format file resolves against one other folder (the file was
    exported with `--base-dir` there, or moved), that is one warning naming the folder,
    not a problem: the trainer reads the features from the file and never opens those
    images. For the old format, whose images the trainer opens, they stay problems.

    Raises:
        InputError: the file cannot be opened or read.
    """
    if max_problems is not None and max_problems < 0:
        raise ValueError(f"max_problems must be None or >= 0, got {max_problems}")
    path = Path(path)
    try:
        with path.open("rb") as raw:
            return _Validator(path, check_paths, max_problems, base_dir).run(raw)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc


class _Validator:
    """One run over one file: the per-identity checks and what spans identities."""

    def __init__(
        self,
        path: Path,
        check_paths: bool,
        max_problems: int | None,
        base_dir: Path | None = None,
    ) -> None:
        self.report = ValidationReport(path)
        self._folder = path.resolve().parent if base_dir is None else base_dir.resolve()
        # Other folders every missing relative path resolves against (None: not looked).
        self._others: list[Path] | None = None if base_dir is not None else []
        self._missing: dict[str, list[tuple[str, str, str]]] = {}  # why -> (who, field, found)
        self._relative_missing = True
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
        first = first_non_space(raw)
        if not first:
            found = "an empty file" if raw.seek(0, os.SEEK_END) == 0 else "only whitespace"
            return self._file_problem("Q3-empty", "a JSON object keyed by identity", found)
        raw.seek(start)
        if first != b"{":
            return self._walk(parse_whole(raw, start))  # a syntax error or a wrong top level
        try:
            for member in read_members(raw, start=start):
                if member.name is None or not member.name:
                    self._bad_name(member)
                else:
                    self._identity(member.name, member.value)
        except JsonTextError as exc:
            self._add(text_problem(exc, raw))
        return self._finish()

    def _bad_name(self, member: Member) -> None:
        """Q3-identity-name: a key that is not valid Unicode, or empty."""
        if "UTF-8" in str(member.key_error):
            try:
                member.key_bytes.decode("utf-8")
                at = 0
            except UnicodeDecodeError as exc:
                at = exc.start
            bad = member.key_bytes[at : at + 1].hex(" ").upper()
            found = f"byte {bad} at byte offset {member.key_offset + at} (line {member.line})"
            self._add(Problem("Q3-encoding", None, None, "UTF-8 text", found))
            return
        if member.name is None:
            expected = "a key of valid Unicode (a lone surrogate is not)"
            found = f"{member.key_text} ({member.key_error}) at line {member.line}"
        else:
            expected, found = "a non-empty identity", f'"" at line {member.line}'
        self._add(Problem("Q3-identity-name", member.key_text, None, expected, found))

    def _check_encoding_start(self, head: bytes) -> int | None:
        """Where the JSON text starts (after a UTF-8 BOM), or None when it is not UTF-8."""
        start = bom_length(head)
        if start:  # read past, as featstore's readers do; but the trainer would not
            message = (
                "json.load on a file opened with encoding='utf-8' rejects it "
                "(featstore's readers skip it)"
            )
            self._file_problem("Q3-encoding", "UTF-8 without a BOM", "a UTF-8 BOM", message)
            return start
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
            found = describe(top)
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
        if (
            self._missing
            and self._others
            and self._relative_missing
            and (self.report.format == "new")
        ):
            count = sum(map(len, self._missing.values()))
            expected = f"paths relative to the JSON file's folder {self._folder}"
            found = (
                f"{count} of {self._paths_checked} paths resolve against {self._others[0]} "
                "instead (the --base-dir of the export?); the trainer reads the features "
                "from the file and never opens them"
            )
            message = f"check them there with --base-dir {self._others[0]}"
            self.report.warnings.append(
                Problem("Q2-base-dir", None, None, expected, found, message)
            )
            return self.report
        self._missing_problems()
        if self._check_paths and self._paths_checked and not self._paths_found:
            found = f"none of {self._paths_checked} paths exists"
            found += guess_base_dir(self._first_missing, self._folder)
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
        issues = IdentityProblems(name)
        frames = 0
        if not isinstance(value, dict):
            issues.add("Q3-type", None, "an object", describe(value))
        else:
            fmt = identity_format(value)
            if fmt == "unknown":
                keys = f"fields {', '.join(list(value)[:8])}" if value else "an empty object"
                expected = "face_features + video_data (new format) or video_images (old)"
                issues.add("Q3-unknown-format", None, expected, keys)
            elif report.format == "unknown":
                report.format, self._format_from = fmt, name
            elif fmt != report.format:
                expected = f"the {report.format} format, as identity {self._format_from}"
                issues.add("Q3-mixed-format", None, expected, f"the {fmt} format")
            if fmt in ("new", "3d"):
                frames = self._check_new(name, value, issues, three_d=fmt == "3d")
            elif fmt == "old":
                frames = self._check_old(value, issues)
        report.frames += frames
        for problem in issues.problems(name, frames):
            self._add(problem)

    def _check_old(self, obj: dict[str, Any], issues: IdentityProblems) -> int:
        self._check_path(issues, "face_image_path", require(issues, obj, "face_image_path"))
        images = frame_list(issues, obj, "video_images", "an array of paths")
        for i, image in enumerate(images or ()):
            self._check_path(issues, f"video_images[{i}]", image)
        return len(images or ())

    def _check_new(
        self, name: str, obj: dict[str, Any], issues: IdentityProblems, *, three_d: bool
    ) -> int:
        vectors: list[tuple[str, Any]] = []  # feature vectors, for the dim checks below
        self._check_path(issues, "face_image_path", require(issues, obj, "face_image_path"))
        face = require(issues, obj, "face_features")
        if face is not MISSING:
            vectors.append(("face_features", face))
        json_format = "3d" if three_d else "new"
        face_shapes, frame_shapes = _FACE_SHAPES[json_format], _FRAME_SHAPES[json_format]
        for key, shape in face_shapes.items():
            check_numbers(issues, key, require(issues, obj, key), shape)
        frames = frame_list(issues, obj, "video_data", "an array of frame objects")
        for i, frame in enumerate(frames or ()):
            where = f"video_data[{i}]"
            if not isinstance(frame, dict):
                issues.add("Q3-type", where, "an object", describe(frame))
                continue
            self._check_path(
                issues, f"{where}.image_path", require(issues, frame, "image_path", where)
            )
            feats = require(issues, frame, "features", where)
            if feats is not MISSING:
                vectors.append((f"{where}.features", feats))
            for key, shape in frame_shapes.items():
                check_numbers(issues, f"{where}.{key}", require(issues, frame, key, where), shape)
        check_counts(issues, obj, None if frames is None else len(frames))
        for field, vector in vectors:
            check_numbers(issues, field, vector, (None,))
        self._check_dims(name, obj, vectors, issues)
        return len(frames or ())

    def _check_dims(
        self,
        name: str,
        obj: dict[str, Any],
        vectors: list[tuple[str, Any]],
        issues: IdentityProblems,
    ) -> None:
        """Q1: vector lengths vs feature_dim vs dinov2_model, and across identities."""
        declared = require(issues, obj, "feature_dim")
        declared_dim: int | None = None
        if type(declared) is int and declared > 0:
            declared_dim = declared
        elif declared is not MISSING:
            issues.add("Q3-type", "feature_dim", "an integer > 0", describe(declared))
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
        model = self._check_model(require(issues, obj, "dinov2_model"), dim, issues)
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
    def _check_model(model: Any, dim: int | None, issues: IdentityProblems) -> str | None:
        """dinov2_model when it is a known model of `dim`, else None (after reporting)."""
        if model is MISSING:
            return None
        known = model_dims()
        if type(model) is not str or model not in known:
            expected = f"one of {', '.join(known)}"
            code = "Q1-unknown-model" if type(model) is str else "Q3-type"
            issues.add(code, "dinov2_model", expected, describe(model))
            return None
        if dim is not None and known[model] != dim:
            same = ", ".join(m for m, d in known.items() if d == dim) or "no DINOv2 model"
            expected = f"a model of {dim}-dim features ({same})"
            found = f"{model} ({known[model]}-dim)"
            message = "the trainer builds its layers for the model's dim"
            issues.add("Q1-dim-mismatch", "dinov2_model", expected, found, message)
            return None  # so it is not the reference other identities are compared with
        return model

    def _missing_problems(self) -> None:
        """One problem per cause of missing paths, with a count beyond the first."""
        for items in self._missing.values():
            who, field, found = items[0]
            if len(items) > 1:
                identities = len({item[0] for item in items})
                found += f"; and {len(items) - 1} more such paths in {identities} identities"
            self._add(Problem("Q2-missing-path", who, field, "an existing file", found))

    def _check_path(self, issues: IdentityProblems, field: str, value: Any) -> None:
        """Q2: a non-empty string with '/' separators naming an existing file."""
        if value is MISSING:
            return
        if type(value) is not str or not value:
            issues.add("Q3-type", field, "a non-empty path string", describe(value))
            return
        if "\\" in value:
            message = (
                "featstore accepts '\\', but the seed's trainer on Linux reads it as part of a name"
            )
            issues.add("Q2-backslash", field, "'/' separators", describe(value), message)
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
        found = f"{describe(value)} -> {resolved} ({why})"
        self._missing.setdefault(why, []).append((issues.identity, field, found))
        self._look_elsewhere(value.replace("\\", "/"))

    def _look_elsewhere(self, relative: str) -> None:
        """Keep the other folders that every missing path so far resolves against."""
        if self._others is None or not self._relative_missing:
            return
        if Path(relative).is_absolute():
            self._relative_missing = False
            return
        if not self._others and sum(map(len, self._missing.values())) == 1:  # the first
            candidates = [*list(self._folder.parents)[:5], Path.cwd().resolve()]
            self._others = list(dict.fromkeys(c for c in candidates if c != self._folder))
        self._others = [c for c in self._others if (c / relative).is_file()]
        if not self._others:
            self._relative_missing = False  # no one folder: they stay problems


# -- helpers ---------------------------------------------------------------------------
