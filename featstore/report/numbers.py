"""The report's numbers over many rows, read one identity range at a time
(`featstore.report.ranges`): the worst identities, frames per identity, the angles, the
detector scores and the feature norms (`featstore.report.tally` sums them up).

Only bounded results come back: TABLE_ROWS identities, a few statistics, one count per
histogram bin and per range, never a value per identity or per frame (issue 25: 10^6
identities).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from featstore.report.data import (
    ANGLES,
    FLAGGED_LISTED,
    TABLE_ROWS,
    FlaggedNorm,
    IdentityRow,
    NormCheck,
    worst_first,
)
from featstore.report.plots import Binned, bin_edges
from featstore.report.ranges import IdentityRange, each_range
from featstore.report.stats import Distribution, Stats
from featstore.report.tally import Bins, Column, Count, Group, summarise

if TYPE_CHECKING:
    import duckdb

NORM_TOLERANCE = 1e-3
ANGLE_BINS = Bins(72)
SCORE_BINS = Bins(60)
NORM_BINS = Bins(60, min_span=4 * NORM_TOLERANCE)
ROLES = ("face", "frame")

# Worst first (`worst_first`), as SQL: not valid first, then the lowest share of ok frames
# (no frames: all lost), then the most frames lost, then the name.
_WORST_FIRST = (
    "valid, CASE WHEN frames_total > 0 THEN frames_ok / frames_total ELSE 0.0 END, "
    "frames_ok - frames_total, identity"
)


@dataclass(frozen=True)
class IdentityTable:
    """What the report shows per identity, gathered range by range.

    listed: the TABLE_ROWS worst, worst first. with_face and rejected: per range (in
    `ranges` order), the identities with a frontal row and the frames not ok by status,
    so that a sample can be drawn by position and only its rows fetched."""

    listed: list[IdentityRow]
    total: int
    valid: int
    frames: int  # frames selected (all, or those --where keeps)
    rejections: Counter[tuple[str, str | None]]  # (status, error) -> frames
    frames_per_identity: dict[str, Distribution]  # "all", "ok"
    with_face: list[int]
    rejected: list[dict[str, int]]

    def reasons(self, listed: int) -> list[tuple[str, str | None, int]]:
        """The most frequent (status, error) of the frames not ok, with their frames."""
        rows = [(s, e, n) for (s, e), n in self.rejections.items()]
        # As SQL orders them: most frames first, then status, then error (nulls last).
        return sorted(rows, key=lambda r: (-r[2], r[0], r[1] is None, r[1] or ""))[:listed]


def identity_table(
    con: duckdb.DuckDBPyConnection, ranges: Sequence[IdentityRange]
) -> IdentityTable:
    listed: list[IdentityRow] = []
    total = valid = 0
    frames: dict[str, Counter[int]] = {"all": Counter(), "ok": Counter()}
    with_face, rejected = [], []
    frame_count = 0
    rejections: Counter[tuple[str, str | None]] = Counter()
    for _ in each_range(con, ranges):
        # The range's identities once, then counted and sorted there (the view groups
        # every row of the range: one aggregate, not one per question).
        con.execute("CREATE OR REPLACE TEMP TABLE _range_identities AS SELECT * FROM identities")
        rows = con.execute(
            "SELECT identity, face_status, frames_total, frames_ok, frames_no_face, "
            f"frames_unreadable, valid FROM _range_identities ORDER BY {_WORST_FIRST} "
            f"LIMIT {TABLE_ROWS}"
        ).fetchall()
        listed = worst_first(
            listed
            + [
                IdentityRow(str(i), s, int(t), int(ok), int(nf), int(ur), bool(v))
                for i, s, t, ok, nf, ur, v in rows
            ]
        )[:TABLE_ROWS]
        n, n_valid, n_face = con.execute(
            "SELECT count(*), count(*) FILTER (valid), count(*) FILTER (face_status IS NOT NULL) "
            "FROM _range_identities"
        ).fetchall()[0]
        total, valid = total + int(n), valid + int(n_valid)
        with_face.append(int(n_face))
        for name, column in (("all", "frames_total"), ("ok", "frames_ok")):
            counted = con.execute(
                f"SELECT {column}, count(*) FROM _range_identities GROUP BY ALL"
            ).fetchall()
            frames[name].update({int(v): int(c) for v, c in counted})
        # Frames by status and error (one group per distinct error message).
        statuses = con.execute("SELECT status, error, count(*) FROM frames GROUP BY ALL").fetchall()
        frame_count += sum(int(c) for _, _, c in statuses)
        not_ok = [(str(s), e, int(c)) for s, e, c in statuses if s != "ok"]
        rejections.update({(s, e): c for s, e, c in not_ok})
        by_status: Counter[str] = Counter()
        for s, _, c in not_ok:
            by_status[s] += c
        rejected.append(dict(by_status))
    con.execute("DROP TABLE IF EXISTS _range_identities")
    return IdentityTable(
        listed,
        total,
        valid,
        frame_count,
        rejections,
        _integer_distributions(frames),
        with_face,
        rejected,
    )


def _integer_distributions(counted: dict[str, Counter[int]]) -> dict[str, Distribution]:
    """Statistics (exact: every value is known with its count) and one-bin-per-integer
    histograms on shared edges."""
    values = [v for c in counted.values() for v in c]
    edges = (
        bin_edges(float(min(values)), float(max(values)), "integer", 0.0)
        if values
        else np.zeros(0, np.float64)
    )
    found = {}
    for name, counter in counted.items():
        v = np.array(sorted(counter), np.float64)
        w = np.array([counter[int(x)] for x in v], np.int64)
        counts = np.histogram(v, edges, weights=w)[0].astype(np.int64) if edges.size else w[:0]
        found[name] = Distribution(Stats.of_counted(v, w), Binned(edges, counts))
    return found


def frame_groups(pose: Sequence[Group]) -> list[Group]:
    """The angles of `valid_frames` (rows with an avg_angle), each in its own panel, then
    the head pose's panels."""
    angles = [Group(ANGLE_BINS, (Column(name, name, "avg_angle IS NOT NULL"),)) for name in ANGLES]
    return angles + list(pose)


def image_numbers(
    con: duckdb.DuckDBPyConnection, ranges: Sequence[IdentityRange]
) -> tuple[dict[str, Distribution], NormCheck]:
    """The detector scores and feature norms of `images`, per role, and the norm check."""
    norm = "sqrt(array_inner_product(features, features))"
    bad = f"NOT isfinite({norm}) OR {norm} IS NULL"
    off = f"isfinite({norm}) AND {norm} <> 0 AND abs({norm} - 1) > {NORM_TOLERANCE!r}"
    has = "features IS NOT NULL"
    panels = [
        Group(
            SCORE_BINS,
            tuple(
                Column(f"score {r}", "det_score", f"role = '{r}' AND det_score IS NOT NULL")
                for r in ROLES
            ),
        ),
        Group(
            NORM_BINS, tuple(Column(f"norm {r}", norm, f"role = '{r}' AND {has}") for r in ROLES)
        ),
    ]
    counts = [
        Count("non_finite", f"{has} AND ({bad})"),
        Count("zero", f"{has} AND {norm} = 0"),
        Count("non_unit", f"{has} AND {off}"),
    ]
    found, counted = summarise(con, "images", ranges, panels, counts)
    flagged_total = sum(counted.values())
    flagged: list[tuple[float, FlaggedNorm]] = []
    if flagged_total:
        # The worst few, named by SQL per range (only ranges with a flagged norm cost a
        # query): NaN/inf first, then by distance from 1.
        for _ in each_range(con, ranges):
            rows = con.execute(
                f"""SELECT identity, role, image_path, n,
                           CASE WHEN isfinite(n) THEN abs(n - 1) ELSE 'inf'::DOUBLE END AS d
                    FROM (SELECT identity, role, image_path, {norm} AS n FROM images
                          WHERE {has})
                    WHERE NOT isfinite(n) OR n = 0 OR abs(n - 1) > {float(NORM_TOLERANCE)}
                    ORDER BY d DESC, identity, role, image_path
                    LIMIT {int(FLAGGED_LISTED)}"""
            ).fetchall()
            flagged += [
                (float(d), FlaggedNorm(str(i), str(r), str(p), float(n))) for i, r, p, n, d in rows
            ]
        flagged.sort(key=lambda x: (-x[0], x[1].identity, x[1].role, x[1].image_path))
    return (
        {r: found[f"score {r}"] for r in ROLES},
        NormCheck(
            norms={r: found[f"norm {r}"] for r in ROLES},
            tolerance=NORM_TOLERANCE,
            non_finite=counted["non_finite"],
            zero=counted["zero"],
            non_unit=counted["non_unit"],
            flagged=[f for _, f in flagged[:FLAGGED_LISTED]],
        ),
    )
