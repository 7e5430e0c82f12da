"""`featstore validate DIR`: face000's npy training directory checked (docs/formats.md).

Besides what `reading` checks (the eight files, dtypes, shapes, counts and row agreement
between the npy files and the JSON, finite numbers, strings), this finds the damage a
rerun of the seed's script leaves:

- original landmarks that do not normalise to the keypoints file (a rerun stores the
  normalised keypoints as "original" ones; the trainers then shrink `keypoints_3d` again);
- a person's frames listed twice, or apart (a rerun processes the remaining frames of a
  partly failed person twice, appended at the end).

A fresh directory of the seed's script passes: its empty video `landmarks_3d_original` is
a note (the trainers then use the keypoints file, which is right), not a failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from featstore.npy_dir.layout import FRONT, SIDES, VIDEO, keypoints
from featstore.npy_dir.reading import (
    MetadataHead,
    Problem,
    Problems,
    SideArrays,
    check_files,
    failures,
    read_arrays,
    read_failed,
    read_metadata,
)

_RERUN_HINT = (
    "the seed's script was run again over its own output; write the directory afresh: "
    "`featstore export-npy` from a store, or the seed's script with --force_reprocess"
)
_BLOCK = 65536


@dataclass
class NpyReport:
    """What `validate_npy_dir` found."""

    folder: Path
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    feature_dim: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        rows = ", ".join(f"{n} {side} rows" for side, n in self.rows.items())
        dim = f", {self.feature_dim} dims" if self.feature_dim else ""
        return f"npy training directory ({rows or 'unreadable'}{dim})"

    def to_dict(self) -> dict[str, Any]:
        def one(p: Problem) -> dict[str, str]:
            return {
                "file": p.file,
                "field": p.field,
                "expected": p.expected,
                "actual": p.actual,
                "hint": p.hint,
            }

        return {
            "path": str(self.folder),
            "format": "npy-dir",
            "ok": self.ok,
            "rows": self.rows,
            "feature_dim": self.feature_dim,
            "problems": [one(p) for p in self.problems],
            "notes": [one(p) for p in self.notes],
        }


def validate_npy_dir(folder: str | Path) -> NpyReport:
    """Every problem of the directory at `folder`, with what to do about each."""
    folder = Path(folder)
    problems = Problems(folder, strict=False)
    report = NpyReport(folder)
    if check_files(folder, problems):
        arrays = {side: read_arrays(folder, side, problems) for side in SIDES}
        scale: float | None = None
        for side in SIDES:
            side_arrays = arrays[side]
            if side_arrays is None:
                continue
            rows, dim = side_arrays.features.shape
            report.rows[side], report.feature_dim = rows, dim
            _check_finite(side, side_arrays, problems)
            checker = _RowChecks(side, side_arrays, scale, problems)
            head = read_metadata(folder, side, rows, dim, problems, checker.row)
            checker.finish(head)
            if side == "front" and head.standard_info:
                scale = head.standard_info.get("standard_scale")
            _check_failed(folder, side, rows, problems)
    report.problems = problems.errors
    report.notes = [p for p in problems.found if p.severity == "note"]
    return report


def _check_finite(side: str, arrays: SideArrays, problems: Problems) -> None:
    layout = FRONT if side == "front" else VIDEO
    for name, array in ((layout.feature, arrays.features), (layout.keypoints, arrays.keypoints)):
        for start in range(0, len(array), _BLOCK):
            block = array.read(start, start + _BLOCK)
            bad = ~np.isfinite(block.reshape(len(block), -1)).all(axis=1)
            if bad.any():
                row = start + int(np.flatnonzero(bad)[0])
                problems.add(
                    Problem(
                        name,
                        f"row {row}",
                        "finite numbers",
                        "NaN or infinite",
                        "write the directory again; a NaN trains NaN",
                    )
                )
                break


class _RowChecks:
    """Checks across a side's rows as they stream: originals against the keypoints file,
    each person's frames once and together."""

    def __init__(
        self, side: str, arrays: SideArrays, scale: float | None, problems: Problems
    ) -> None:
        self.side, self.arrays, self.scale, self.problems = side, arrays, scale, problems
        self.layout = FRONT if side == "front" else VIDEO
        self.paths: set[str] = set()
        self.done: set[str] = set()
        self.person: str | None = None
        self.twice = self.apart = self.off = 0
        self.first_off: int | None = None

    def row(self, key: str, index: int, value: Any) -> None:
        if key == "standard_info":
            self.scale = value.get("standard_scale")  # front: before its rows
        elif key == "metadata":
            self._metadata(index, value)
        elif key == "landmarks_3d_original" and isinstance(self.scale, (int, float)):
            self._original(index, value, self.scale)

    def _metadata(self, index: int, row: dict[str, Any]) -> None:
        path, person = row["image_path"], row["person_name"]
        if path in self.paths:
            self.twice += 1
            if self.twice == 1:
                self.problems.add(
                    Problem(
                        self.layout.metadata,
                        f"metadata[{index}]",
                        "each image once",
                        f"{path!r} again",
                        _RERUN_HINT,
                    )
                )
        self.paths.add(path)
        if self.side == "video" and person != self.person:
            if person in self.done and not self.apart:
                self.apart += 1
                self.problems.add(
                    Problem(
                        self.layout.metadata,
                        f"metadata[{index}]",
                        "each person's frames together",
                        f"frames of {person!r} again after other persons",
                        _RERUN_HINT,
                    )
                )
            if self.person is not None:
                self.done.add(self.person)
            self.person = person

    def _original(self, index: int, value: Any, scale: float) -> None:
        expected = keypoints(np.asarray(value, np.float64), scale)
        if not np.allclose(expected, self.arrays.keypoints[index], rtol=1e-6, atol=1e-6):
            self.off += 1
            if self.first_off is None:
                self.first_off = index

    def finish(self, head: MetadataHead) -> None:
        if self.off:
            self.problems.add(
                Problem(
                    self.layout.metadata,
                    "landmarks_3d_original",
                    f"originals that normalise to {self.layout.keypoints} "
                    "((L - mean(L)) x standard_scale)",
                    f"{self.off} rows that do not (first: row {self.first_off}); the trainers "
                    "would normalise these a second time",
                    _RERUN_HINT,
                )
            )
        if self.side == "video" and head.counts.get("landmarks_3d_original") == 0:
            self.problems.add(
                Problem(
                    self.layout.metadata,
                    "landmarks_3d_original",
                    "the video frames' original landmarks",
                    "[] (a fresh run of the seed's script never fills them)",
                    "fine for its trainers, which then use video_keypoints.npy; "
                    "`featstore export-npy` writes the real values",
                    severity="note",
                )
            )


def _check_failed(folder: Path, side: str, rows: int, problems: Problems) -> None:
    layout = FRONT if side == "front" else VIDEO
    found = read_failed(folder, side, problems)  # type: ignore[arg-type]
    successful, total, failed = (found.get(k) for k in ("successful", "total_images", "failed"))
    if isinstance(successful, int) and successful != rows:
        problems.add(
            Problem(
                layout.failed,
                "successful",
                f"{rows} (rows of {layout.feature})",
                str(successful),
                "the files come from different runs; " + _RERUN_HINT,
            )
        )
    listed = sum(1 for _ in failures(found))
    if isinstance(total, int) and isinstance(failed, int) and failed != listed:
        problems.add(
            Problem(
                layout.failed,
                "failed_details",
                f"{failed} entries (failed)",
                f"{listed}",
                "a rerun lists only its own failures; harmless for "
                "the trainers, which do not read this file",
                severity="note",
            )
        )
