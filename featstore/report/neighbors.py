"""The report's who-is-who section: identities that may be one person, images in two places.

From the store's neighbors views (`featstore.store.neighbors`, written by `featstore
neighbors`): the identity pairs at or above the run's threshold, most similar first, with
their frontal images side by side; and the image pairs at or above the copy threshold,
across identities (both places shown) and the count within one identity. It reads the
ArcFace model's neighbors when the store has them, else those of the report's model. The
pairs are the whole store's (the search looks across identities, which `--where` does
not select). Without a neighbors table the section says how to make one.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING, Any

from featstore.report.gallery import Thumbnail, make_thumbnail
from featstore.store.consistency import is_arcface_model
from featstore.store.neighbors import (
    IDENTITY_VIEW,
    copied_images,
    has_views,
    suspected_pairs,
)

if TYPE_CHECKING:
    import duckdb

PAIRS_LISTED = 12


@dataclass(frozen=True)
class PairShown:
    """Two images side by side: two frontal images, or one image in two places."""

    left_identity: str
    right_identity: str
    cosine: float
    left: Thumbnail | None
    right: Thumbnail | None
    note: str = ""


@dataclass(frozen=True)
class NeighborsSection:
    model: str  # the model whose neighbors are shown
    threshold: float
    copy_threshold: float
    pairs_total: int
    pairs: list[PairShown]
    copies_total: int  # image pairs across identities
    copies: list[PairShown]
    near_copies: int  # image pairs within one identity

    def summary(self) -> dict[str, Any]:
        """The numbers as JSON-ready values (the report embeds them)."""
        return {
            "model": self.model,
            "threshold": self.threshold,
            "copy_threshold": self.copy_threshold,
            "identity_pairs": self.pairs_total,
            "copied_images": self.copies_total,
            "near_copies_within_identity": self.near_copies,
            "pairs": [[p.left_identity, p.right_identity, p.cosine] for p in self.pairs],
            "copies": [
                [c.left.image_path if c.left else None, c.right.image_path if c.right else None]
                for c in self.copies
            ],
        }


def read_neighbors(
    con: duckdb.DuckDBPyConnection, base_dir: str | None, model: str, limit: int = PAIRS_LISTED
) -> NeighborsSection | None:
    """The section from the report's connection; None when the store has no neighbors."""
    if not has_views(con):
        return None
    searched = [r[0] for r in con.execute(f"SELECT DISTINCT model FROM {IDENTITY_VIEW}").fetchall()]
    arcface = sorted(m for m in searched if is_arcface_model(m))
    chosen = arcface[0] if arcface else model if model in searched else None
    if chosen is None:
        return None
    thresholds = con.execute(
        "SELECT (SELECT any_value(threshold) FROM identity_neighbors WHERE model = $1), "
        "(SELECT any_value(threshold) FROM image_neighbors WHERE model = $1)",
        [chosen],
    ).fetchone()
    pairs, pairs_total = suspected_pairs(con, chosen, limit)
    frontal = _frontal_paths(con, {n for p in pairs for n in (p.identity, p.other)})
    copies, copies_total = copied_images(con, chosen, same_identity=False, limit=limit)
    _, near = copied_images(con, chosen, same_identity=True, limit=0)
    return NeighborsSection(
        model=chosen,
        threshold=float(thresholds[0]) if thresholds and thresholds[0] is not None else 0.0,
        copy_threshold=float(thresholds[1]) if thresholds and thresholds[1] is not None else 0.0,
        pairs_total=pairs_total,
        pairs=[
            PairShown(
                p.identity,
                p.other,
                p.cosine,
                _thumb(base_dir, frontal.get(p.identity)),
                _thumb(base_dir, frontal.get(p.other)),
                f"found by {p.vectors}",
            )
            for p in pairs
        ],
        copies_total=copies_total,
        copies=[
            PairShown(
                c.identity,
                c.other_identity,
                c.cosine,
                make_thumbnail(base_dir, c.path),
                make_thumbnail(base_dir, c.other_path),
            )
            for c in copies
        ],
        near_copies=near,
    )


def render_neighbors(section: NeighborsSection | None) -> str:
    heading = "<h2 id='neighbors'>Who is who: duplicate identities and copied images</h2>"
    if section is None:
        return (
            heading + "<p class='muted'>The store has no neighbors table. Run <code>featstore "
            "neighbors --store ...</code> (with an ArcFace model in the store) to list here "
            "identities that may be one person and images found in two places.</p>"
        )
    pairs = "".join(_figure(p) for p in section.pairs)
    copies = "".join(_figure(c) for c in section.copies)
    return (
        heading + f"<p>By <code>{escape(section.model)}</code>: {section.pairs_total} identity "
        f"pairs at or above cosine {section.threshold:g} (frontal images side by side, most "
        f"similar first). Keep them on one side of a split with <code>split_by_identity</code> "
        '(it groups them by default); drop them with <code>--where "NOT '
        'duplicate_identity(identity)"</code>.</p>'
        + (f"<div class='strip'>{pairs}</div>" if pairs else "<p>None.</p>")
        + f"<p>{section.copies_total} image pairs in two identities at or above cosine "
        f"{section.copy_threshold:g} (both places shown), and {section.near_copies} within one "
        'identity; drop them with <code>--where "NOT duplicate_image(image_path)"</code> '
        "(view <code>duplicate_images</code>).</p>"
        + (f"<div class='strip'>{copies}</div>" if copies else "<p>None.</p>")
    )


def _frontal_paths(con: duckdb.DuckDBPyConnection, names: set[str]) -> dict[str, str]:
    if not names:
        return {}
    rows = con.execute(
        "SELECT identity, any_value(image_path) FROM faces WHERE list_contains($1, identity) "
        "GROUP BY identity",
        [sorted(names)],
    ).fetchall()
    return {str(name): str(path) for name, path in rows}


def _thumb(base_dir: str | None, path: str | None) -> Thumbnail | None:
    return make_thumbnail(base_dir, path) if path is not None else None


def _figure(p: PairShown) -> str:
    paths = " = ".join(escape(t.image_path) for t in (p.left, p.right) if t is not None)
    caption = f"{escape(p.left_identity)} ~ {escape(p.right_identity)}<br>cosine {p.cosine:.4f}" + (
        f" ({escape(p.note)})" if p.note else ""
    )
    return (
        "<figure style='width: 272px'><div style='display: flex; gap: 8px'>"
        f"{_img(p.left)}{_img(p.right)}</div><figcaption>{caption}<br>"
        f"<span class='muted'>{paths}</span></figcaption></figure>"
    )


def _img(t: Thumbnail | None) -> str:
    if t is not None and t.data_uri is not None:
        return f"<img src='{t.data_uri}' alt='{escape(t.image_path)}'>"
    reason = t.problem if t is not None and t.problem else "no frontal image"
    return f"<div class='placeholder'>{escape(reason or '')}</div>"
