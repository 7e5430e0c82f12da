"""The report's numbers over many rows, computed by DuckDB (`featstore.report.sql_stats`):
the worst identities, frames per identity, angles, detector scores and feature norms.

Only bounded results come back: TABLE_ROWS identities, a few statistics and one count per
histogram bin, never a value per identity or per frame (issue 25: 10^6 identities).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from featstore.report.data import (
    ANGLES,
    FLAGGED_LISTED,
    TABLE_ROWS,
    FlaggedNorm,
    IdentityRow,
    NormCheck,
)
from featstore.report.sql_stats import Bins, Column, distributions
from featstore.report.stats import Distribution

if TYPE_CHECKING:
    import duckdb

NORM_TOLERANCE = 1e-3

# Worst first (see the module's docstring), as SQL: not valid first, then the lowest share
# of ok frames (no frames: all lost), then the most frames lost, then the name.
_WORST_FIRST = (
    "valid, CASE WHEN frames_total > 0 THEN frames_ok / frames_total ELSE 0.0 END, "
    "frames_ok - frames_total, identity"
)


def identity_rows(con: duckdb.DuckDBPyConnection) -> tuple[list[IdentityRow], int, int]:
    """The TABLE_ROWS worst identities, worst first; all identities and the valid ones."""
    rows = con.execute(
        "SELECT identity, face_status, frames_total, frames_ok, frames_no_face, "
        f"frames_unreadable, valid FROM identities ORDER BY {_WORST_FIRST} LIMIT {TABLE_ROWS}"
    ).fetchall()
    total, valid = con.execute(
        "SELECT count(*), count(*) FILTER (valid) FROM identities"
    ).fetchall()[0]
    listed = [
        IdentityRow(str(i), s, int(t), int(ok), int(nf), int(ur), bool(v))
        for i, s, t, ok, nf, ur, v in rows
    ]
    return listed, int(total), int(valid)


FRAMES_BINS = Bins("integer")
ANGLE_BINS = Bins(72)
SCORE_BINS = Bins(60)
NORM_BINS = Bins(60, min_span=4 * NORM_TOLERANCE)


def frames_per_identity(con: duckdb.DuckDBPyConnection) -> dict[str, Distribution]:
    columns = [Column("identities", "frames_total"), Column("identities", "frames_ok")]
    return dict(zip(("all", "ok"), distributions(con, columns, FRAMES_BINS), strict=True))


def angles(con: duckdb.DuckDBPyConnection) -> dict[str, Distribution]:
    source = "(SELECT * FROM valid_frames WHERE avg_angle IS NOT NULL)"
    return {name: distributions(con, [Column(source, name)], ANGLE_BINS)[0] for name in ANGLES}


def by_role(
    con: duckdb.DuckDBPyConnection, expression: str, condition: str, bins: Bins
) -> dict[str, Distribution]:
    """Per role, the statistics and histogram (shared edges) of `expression`."""
    columns = [
        Column(f"(SELECT * FROM images WHERE role = '{role}' AND {condition})", expression)
        for role in ("face", "frame")
    ]
    return dict(zip(("face", "frame"), distributions(con, columns, bins), strict=True))


def norms(con: duckdb.DuckDBPyConnection) -> NormCheck:
    norm = "sqrt(array_inner_product(features, features))"
    norms = by_role(con, norm, "features IS NOT NULL", NORM_BINS)
    non_finite, zero, non_unit = con.execute(
        f"""SELECT count(*) FILTER (NOT isfinite(n) OR n IS NULL),
                   count(*) FILTER (n = 0),
                   count(*) FILTER (isfinite(n) AND n <> 0 AND abs(n - 1) > {NORM_TOLERANCE!r})
            FROM (SELECT {norm} AS n FROM images WHERE features IS NOT NULL)"""
    ).fetchall()[0]
    # The worst few, named by SQL: NaN/inf first, then by distance from 1 (no per-row
    # identity or path is fetched for the rows that are fine).
    flagged = con.execute(
        f"""SELECT identity, role, image_path, n FROM (
                SELECT identity, role, image_path, {norm} AS n FROM images
                WHERE features IS NOT NULL)
            WHERE NOT isfinite(n) OR n = 0 OR abs(n - 1) > {float(NORM_TOLERANCE)}
            ORDER BY CASE WHEN isfinite(n) THEN abs(n - 1) ELSE 'inf'::DOUBLE END DESC,
                     identity, role, image_path
            LIMIT {int(FLAGGED_LISTED)}"""
    ).fetchall()
    return NormCheck(
        norms=norms,
        tolerance=NORM_TOLERANCE,
        non_finite=int(non_finite),
        zero=int(zero),
        non_unit=int(non_unit),
        flagged=[FlaggedNorm(str(i), str(r), str(p), float(n)) for i, r, p, n in flagged],
    )
