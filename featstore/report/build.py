"""`featstore report`: one self-contained HTML file to look at a store before training.

    read_report(store, model=..., where=...)  ->  ReportData   (the numbers, loaded now)
    write_report(store, out=..., ...)         ->  ReportSummary (plots, thumbnails, HTML)

Every number comes from the DuckDB views of `featstore.store.query` (the ones `featstore query`
and `featstore info` read), over one connection:

- overview: `count_rows`, exactly what `featstore info` prints;
- per-identity table: the `identities` view;
- angles and the head pose (`featstore.report.pose`): `valid_frames`;
- detector scores and feature norms: `images`;
- model comparison: `faces` of two models, `array_cosine_similarity`.

`--where` has export-json's semantics: a predicate over the columns of `frames`, checked
by the same code. It is applied once, underneath every view: on this report's private
connection the `images` view is renamed and replaced by its frontal rows plus the frames
the predicate keeps; `faces`, `frames`, `identities` and `valid_frames` are defined over
`images` and DuckDB binds views when they are queried, so they all see the filtered rows.
The overview still shows the whole store, and says how many frames `--where` kept.

Decisions where the issue is silent:

- "Worst first": identities that are not valid first, then by the share of their frames
  that are not `ok` (an identity without frames counts as all lost), then by frames lost.
- Feature norms: every feature is L2-normalised (docs/formats.md), so a norm further than
  `NORM_TOLERANCE` from 1, zero, NaN or infinite is flagged: counted and listed.
- The gallery samples identities that have a frontal image (seeded, so the same store
  gives the same report); for each, its frontal image and up to `GALLERY_FRAMES` frames
  spread over its frame order. Rejected frames are sampled the same way.
- Cross-model similarity compares the frontal features of the report's model with every
  other model of the store; models of different dimensions cannot be compared, and the
  report says so.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from featstore.errors import InputError, plural
from featstore.report.consistency import has_consistency, read_consistency
from featstore.report.data import (
    ANGLES,
    GalleryIdentity,
    GalleryImage,
    IdentityRow,
    ModelComparison,
    NormCheck,
    ReportData,
    worst_first,
)
from featstore.report.gallery import make_thumbnail
from featstore.report.neighbors import read_neighbors
from featstore.report.numbers import NORM_TOLERANCE, frame_groups, identity_table, image_numbers
from featstore.report.pose import has_pose_columns, pose_query
from featstore.report.ranges import BASE_VIEW, CONSISTENCY_ROWS, identity_ranges
from featstore.report.samples import gallery_names, rejected_rows
from featstore.report.stats import Stats
from featstore.report.tally import summarise
from featstore.store import ModelInfo, ModelSnapshot, Store
from featstore.store.paths import output_path, write_atomic
from featstore.store.query import count_rows
from featstore.store.store import read_failure
from featstore.store.where import check_where, columns_of, where_failed

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

GALLERY_IDENTITIES = 8
GALLERY_FRAMES = 4
REJECTED_SAMPLE = 12
REASONS_LISTED = 12

__all__ = [
    "ANGLES",
    "GalleryIdentity",
    "GalleryImage",
    "IdentityRow",
    "NORM_TOLERANCE",
    "ModelComparison",
    "NormCheck",
    "ReportData",
    "ReportSummary",
    "Stats",
    "read_report",
    "worst_first",
    "write_report",
]


@dataclass(frozen=True)
class ReportSummary:
    """What `write_report` wrote."""

    path: Path
    model: str
    identities: int
    frames: int
    bytes: int
    seconds: float
    unshown_images: int

    def format(self) -> str:
        """One line for people (and a note when some images could not be shown)."""
        line = (
            f"wrote the report of {self.model} ({plural(self.identities, 'identity')}, "
            f"{plural(self.frames, 'frame')}, {self.bytes / (1 << 20):.1f} MiB) to {self.path} "
            f"in {self.seconds:.1f} s"
        )
        if self.unshown_images:
            line += (
                f"\nnote: {self.unshown_images} gallery images could not be shown (missing or "
                "undecodable files); the report lists them"
            )
        return line


def read_report(
    store: str | os.PathLike[str] | Store,
    *,
    model: str | None = None,
    where: str | None = None,
    seed: int = 0,
    gallery_identities: int = GALLERY_IDENTITIES,
    version: int | None = None,
) -> ReportData:
    """Compute the numbers and pick the images of a report on one model of `store`.

    Args:
        store: the store folder, or an open `featstore.store.query.Store`.
        model: the model to report on; required when the store holds several (the others
            appear in the overview and the cross-model similarity).
        where: an SQL predicate over the columns of the `frames` view, as for
            `export-json --where`; frames it rejects are left out of everything but the
            overview.
        seed: the seed of the gallery's samples.
        gallery_identities: how many identities the gallery shows.
        version: report on this version of the model's table (the overview then counts
            that version of that model only).

    Raises:
        StoreError: not a store, no model, an unknown model, several models and no `model`,
            or no rows.
        InputError: a `where` that is not a predicate over the frames' columns.
    """
    if gallery_identities < 0:
        raise InputError(f"gallery_identities must be 0 or more, got {gallery_identities}.")
    opened = Store(store)
    opened.require_models()
    snap = opened.feature_model(model, version)
    snap.require_rows()
    info = snap.info
    if version is None:
        models, counts = opened.models(), count_rows(opened)
    else:
        models, counts = [info], count_rows(opened, model=info.name, version=version)
    recorded = info.provenance.get("base_dir")
    base_dir = recorded if isinstance(recorded, str) else None  # None: placeholders
    rng = random.Random(seed)
    located = opened.location.local is not None  # rows carry their file's index
    ranges = identity_ranges(snap, located=located)
    with _filtered(snap, where, located=located) as con:
        try:
            # The table counts the frames, which evaluates --where on every frame: a
            # predicate that fails on some value (a CAST of text) fails here, where the
            # blame is clear.
            table = identity_table(con, ranges)
        except _duckdb_error() as exc:
            if not where:
                raise read_failure(exc, opened) from exc
            raise where_failed(where, exc, columns_of(con, "frames")) from exc
        try:
            pose_asked = pose_query(con)
            found, counted = summarise(
                con, "valid_frames", ranges, frame_groups(pose_asked.groups()), pose_asked.counts()
            )
            det_scores, norm_check = image_numbers(con, ranges)
            chosen = gallery_names(con, ranges, table.with_face, rng, gallery_identities)
            gallery = _gallery(con, chosen, base_dir)
            rejected_rows_, rejected_total = rejected_rows(
                con, ranges, table.rejected, rng, _image_columns(con), REJECTED_SAMPLE
            )
            rejected = [_gallery_image(row, base_dir) for row in rejected_rows_]
            consistency = None
            if has_consistency(con):
                fine = identity_ranges(snap, located=located, rows=CONSISTENCY_ROWS)
                consistency = read_consistency(con, base_dir, fine)
            neighbors = read_neighbors(con, base_dir, info.name)
        except _duckdb_error() as exc:
            raise read_failure(exc, opened) from exc
    return ReportData(
        store=str(opened.location),
        model=info,
        models=models,
        counts=counts,
        where=where if where and where.strip() else None,
        frames_selected=table.frames,
        identities=table.listed,
        identities_selected=table.total,
        valid_selected=table.valid,
        frames_per_identity=table.frames_per_identity,
        angles={name: found[name] for name in ANGLES},
        det_scores=det_scores,
        norms=norm_check,
        rejection_reasons=table.reasons(REASONS_LISTED),
        comparisons=_comparisons(opened, info, models),
        gallery=gallery,
        rejected=rejected,
        rejected_total=rejected_total,
        seed=seed,
        pose=pose_asked.result(found, counted),
        consistency=consistency,
        neighbors=neighbors,
    )


def write_report(
    store: str | os.PathLike[str] | Store,
    *,
    out: str | os.PathLike[str],
    model: str | None = None,
    where: str | None = None,
    seed: int = 0,
    gallery_identities: int = GALLERY_IDENTITIES,
    version: int | None = None,
) -> ReportSummary:
    """Write the HTML report of one model of `store` to `out` (see `read_report`).

    The file is self-contained (plots and thumbnails are embedded as `data:` URIs, the
    script is inline, nothing is fetched), written beside `out` under a temporary name and
    renamed over it.

    Raises:
        StoreError, InputError: as `read_report`; InputError also for an unusable `out`.
    """
    from featstore.report.html import render_report

    start = time.perf_counter()
    out_path = output_path(Path(out), "an .html file")
    data = read_report(
        store,
        model=model,
        where=where,
        seed=seed,
        gallery_identities=gallery_identities,
        version=version,
    )
    html = render_report(data)
    size = _write_out(out_path, html.encode("utf-8"))
    return ReportSummary(
        path=out_path,
        model=data.model.name,
        identities=data.identities_selected,
        frames=data.frames_selected,
        bytes=size,
        seconds=time.perf_counter() - start,
        unshown_images=len(data.unshown_images),
    )


@contextmanager
def _filtered(
    snap: ModelSnapshot, where: str | None, *, located: bool
) -> Iterator[duckdb.DuckDBPyConnection]:
    """The views of one model's version, with `where` applied to the frames underneath
    them, and `images` a view of BASE_VIEW that `ranges.each_range` can restrict.

    `located`: the rows carry `_file`, their file's index, so that a range reads only the
    files that hold its identities."""
    with snap.connect(located=located) as con:
        predicate = check_where(con, where)
        selected = "SELECT * FROM unfiltered_images"
        if predicate != "true":
            selected += f" WHERE role = 'face' OR {predicate}"
        con.execute("ALTER VIEW images RENAME TO unfiltered_images")
        con.execute(f"CREATE VIEW {BASE_VIEW} AS {selected}")
        con.execute(f"CREATE VIEW images AS SELECT * FROM {BASE_VIEW}")
        yield con


def _duckdb_error() -> type[Exception]:
    import duckdb

    return duckdb.Error


def _arrow(con: duckdb.DuckDBPyConnection, sql: str, **params: Any) -> pa.Table:
    return con.sql(sql, params=params or None).to_arrow_table()


_IMAGE_COLUMNS = "identity, role, frame_index, image_path, status, error, box, landmarks_2d"


def _image_columns(con: duckdb.DuckDBPyConnection) -> str:
    """The gallery's columns, with the head pose where the store has it."""
    return _IMAGE_COLUMNS + (", euler_angles" if has_pose_columns(con) else "")


def _gallery_image(row: dict[str, Any], base_dir: str | None) -> GalleryImage:
    thumbnail = make_thumbnail(
        base_dir, row["image_path"], box=row["box"], landmarks=row["landmarks_2d"]
    )
    euler = row.get("euler_angles")
    return GalleryImage(
        row["identity"],
        row["role"],
        row["frame_index"],
        row["status"],
        row["error"],
        thumbnail,
        None if euler is None else (float(euler[0]), float(euler[1]), float(euler[2])),
    )


def _gallery(
    con: duckdb.DuckDBPyConnection, chosen: list[str], base_dir: str | None
) -> list[GalleryIdentity]:
    """The chosen identities' frontal image and frames spread over their frame order."""
    if not chosen:
        return []
    rows = _arrow(
        con,
        f"SELECT {_image_columns(con)} FROM images WHERE list_contains($chosen, identity) "
        "ORDER BY identity, role, frame_index",
        chosen=chosen,
    ).to_pylist()
    gallery = []
    for name in chosen:
        mine = [r for r in rows if r["identity"] == name]
        face = next((r for r in mine if r["role"] == "face"), None)
        frames = [r for r in mine if r["role"] == "frame"]
        picks = sorted({int(round(x)) for x in np.linspace(0, len(frames) - 1, GALLERY_FRAMES)})
        gallery.append(
            GalleryIdentity(
                identity=name,
                face=_gallery_image(face, base_dir) if face is not None else None,
                frames=[_gallery_image(frames[i], base_dir) for i in picks] if frames else [],
                frames_total=len(frames),
            )
        )
    return gallery


def _comparisons(store: Store, info: ModelInfo, models: list[ModelInfo]) -> list[ModelComparison]:
    """The report's model against every other model: cosine of the frontal features."""
    others = [m for m in models if m.name != info.name]
    if not others:
        return []
    found = []
    with store.connect() as con:
        for other in others:
            if other.dim != info.dim:
                found.append(ModelComparison(info.name, other.name, info.dim, other.dim, 0))
                continue
            rows = con.execute(
                f"""SELECT a.identity,
                           array_cosine_similarity(a.features::FLOAT[{info.dim}],
                                                   b.features::FLOAT[{info.dim}])
                    FROM faces a JOIN faces b ON a.identity = b.identity
                    WHERE a.model = $a AND b.model = $b ORDER BY a.identity""",
                {"a": info.name, "b": other.name},
            ).fetchall()
            cosine = {str(i): (None if c is None else float(c)) for i, c in rows}
            found.append(
                ModelComparison(info.name, other.name, info.dim, other.dim, len(rows), cosine)
            )
    return found


def _write_out(out: Path, data: bytes) -> int:
    """Write `out` whole or not at all (fsynced, renamed); returns its size."""
    try:
        return write_atomic(out, data)
    except OSError as exc:
        raise InputError(
            f"cannot write --out {out}: {exc.strerror or exc}.\n"
            "Hint: choose a folder you can write to."
        ) from exc
