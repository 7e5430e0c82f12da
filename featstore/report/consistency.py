"""The report's identity-consistency section: frames that may show somebody else.

From the store's `identity_consistency` view (`featstore.store.consistency`, ArcFace
embeddings): the frames whose embedding is furthest from their identity's frontal image,
worst first, each thumbnail beside its frontal image, with both cosines and the identity's
share of frames below the threshold. Only frames the report's `--where` keeps are listed
(the view is joined to the report's `frames`), so the section follows the same selection
as the rest of the page. Without an ArcFace model in the store the section says how to
get one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING, Any

from featstore.errors import plural
from featstore.report.gallery import Thumbnail, make_thumbnail
from featstore.report.ranges import IdentityRange, each_range
from featstore.store.consistency import DEFAULT_THRESHOLD, RANGE_MACRO, VIEW

if TYPE_CHECKING:
    import duckdb

SUSPICIOUS_LISTED = 24


@dataclass(frozen=True)
class SuspiciousFrame:
    """One frame of the list, with its identity's frontal image."""

    identity: str
    frame_index: int
    face_cosine: float | None  # None: the frontal image has no embedding
    mean_cosine: float | None
    share_below: float
    frame: Thumbnail
    face: Thumbnail | None


@dataclass(frozen=True)
class ConsistencySection:
    """The numbers of the section and its worst frames."""

    model: str  # the ArcFace model
    threshold: float
    frames_checked: int  # frames with an embedding that --where keeps
    frames_below: int
    identities_below: int  # identities with at least one frame below
    worst: list[SuspiciousFrame]

    def summary(self) -> dict[str, Any]:
        """The numbers as JSON-ready values (the report embeds them)."""
        return {
            "model": self.model,
            "threshold": self.threshold,
            "frames_checked": self.frames_checked,
            "frames_below": self.frames_below,
            "identities_below": self.identities_below,
            "worst": [
                [s.identity, s.frame.image_path, _finite(s.face_cosine), _finite(s.mean_cosine)]
                for s in self.worst
            ],
        }


def has_consistency(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the connection has the view (the store has an ArcFace model)."""
    views = {row[0] for row in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
    return VIEW in views


def read_consistency(
    con: duckdb.DuckDBPyConnection,
    base_dir: str | None,
    ranges: Sequence[IdentityRange],
    limit: int = SUSPICIOUS_LISTED,
) -> ConsistencySection:
    """The section from the report's connection (`has_consistency`).

    Read one identity range at a time (`featstore.report.ranges`, CONSISTENCY_ROWS): the
    view holds a range's ArcFace vectors and sums, not the store's; the counts add up (an
    identity lies in one range) and each range's worst frames compete for the list."""
    model, threshold, checked, below, identities = None, None, 0, 0, 0
    found: list[tuple[Any, ...]] = []
    for span in each_range(con, ranges):
        # Only the frames the report keeps (after --where), computed once per range,
        # without the vectors, the boxes or the landmarks: the frames listed fetch theirs.
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _consistency AS
                SELECT c.* FROM {RANGE_MACRO}($low, $high) c
                SEMI JOIN frames f ON f.identity = c.identity AND f.image_path = c.image_path""",
            {"low": span.low or "", "high": span.high},
        )
        totals = con.execute(
            """SELECT any_value(model), any_value(threshold), count(*),
                      count(*) FILTER (below_threshold),
                      count(DISTINCT identity) FILTER (below_threshold)
               FROM _consistency"""
        ).fetchall()[0]
        model, threshold = model or totals[0], threshold or totals[1]
        checked, below = checked + int(totals[2]), below + int(totals[3])
        identities += int(totals[4])
        found += con.execute(
            f"""WITH worst AS (
                    SELECT * FROM _consistency
                    ORDER BY coalesce(face_cosine, mean_cosine) NULLS LAST, identity,
                             frame_index
                    LIMIT {int(limit)})
                SELECT s.identity, s.frame_index, s.image_path, s.face_cosine, s.mean_cosine,
                       s.share_below, f.box, f.landmarks_2d,
                       face.image_path, face.box, face.landmarks_2d
                FROM worst s
                JOIN frames f ON f.identity = s.identity AND f.image_path = s.image_path
                LEFT JOIN faces face ON face.identity = s.identity AND face.status = 'ok'"""
        ).fetchall()
    con.execute("DROP TABLE IF EXISTS _consistency")
    rows = sorted(found, key=_worst_first)[:limit]
    worst = [
        SuspiciousFrame(
            identity=r[0],
            frame_index=int(r[1]),
            face_cosine=r[3],
            mean_cosine=r[4],
            share_below=float(r[5]),
            frame=make_thumbnail(base_dir, r[2], box=r[6], landmarks=r[7]),
            face=None
            if r[8] is None
            else make_thumbnail(base_dir, r[8], box=r[9], landmarks=r[10]),
        )
        for r in rows
    ]
    return ConsistencySection(
        model=str(model) if model is not None else "",
        threshold=float(threshold) if threshold is not None else DEFAULT_THRESHOLD,
        frames_checked=int(checked),
        frames_below=int(below),
        identities_below=int(identities),
        worst=worst,
    )


def _worst_first(row: tuple[Any, ...]) -> tuple[bool, bool, float, str, int]:
    """SQL's order of the worst frames: the lowest cosine to the frontal image (the mean's
    without one) first, NaN after every number (as DuckDB sorts it), frames with neither
    last, then by identity and frame."""
    cosine = row[3] if row[3] is not None else row[4]
    nan = cosine is not None and math.isnan(cosine)
    return (cosine is None, nan, 0.0 if cosine is None or nan else cosine, row[0], int(row[1]))


def render_consistency(section: ConsistencySection | None) -> str:
    """The section's HTML."""
    heading = "<h2 id='consistency'>Identity consistency (ArcFace)</h2>"
    if section is None:
        return (
            heading + "<p class='muted'>The store has no ArcFace model. Run <code>featstore "
            "extract --model arcface</code> to embed every face with the pack's recognition "
            "model and list here the frames that may show somebody else.</p>"
        )
    pairs = "".join(_pair(s) for s in section.worst)
    return (
        heading + f"<p>{section.frames_below} of {section.frames_checked} frames are below cosine "
        f"{section.threshold:g} to their identity's frontal image "
        f"({plural(section.identities_below, 'identity')}), "
        f"by <code>{escape(section.model)}</code>. The "
        f"{len(section.worst)} least similar, worst first, each beside its frontal image. "
        'Drop them with <code>--where "NOT suspicious_frame(image_path)"</code> '
        "(view <code>identity_consistency</code>).</p>"
        + (f"<div class='strip'>{pairs}</div>" if pairs else "<p>No frame to check.</p>")
    )


def _pair(s: SuspiciousFrame) -> str:
    caption = (
        f"{escape(s.identity)} #{s.frame_index}<br>to frontal {_num(s.face_cosine)}, to mean "
        f"{_num(s.mean_cosine)}<br>identity below: {s.share_below:.0%}"
    )
    face = _img(s.face, "no frontal embedding") if s.face else _img(None, "no frontal image")
    return (
        "<figure style='width: 272px'><div style='display: flex; gap: 8px'>"
        f"{face}{_img(s.frame, '')}</div><figcaption>{caption}<br>"
        f"<span class='muted'>{escape(s.frame.image_path)}</span></figcaption></figure>"
    )


def _img(t: Thumbnail | None, missing: str) -> str:
    if t is not None and t.data_uri is not None:
        return f"<img src='{t.data_uri}' alt='{escape(t.image_path)}'>"
    reason = t.problem if t is not None and t.problem else missing
    return f"<div class='placeholder'>{escape(reason)}</div>"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
