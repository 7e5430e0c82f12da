"""Identity consistency from ArcFace embeddings: frames that may show somebody else.

The view `identity_consistency` has one row per `ok` frame of an ArcFace model
(`arcface_<pack>`, docs/formats.md):

    model, identity, image_path, frame_index   the frame (model: the ArcFace model)
    face_cosine      cosine of its embedding to its identity's frontal embedding
                     (null when the frontal image has none)
    mean_cosine      cosine to the identity's mean frame embedding (the mean of its
                     `ok` frames' unit vectors, this frame included)
    threshold        DEFAULT_THRESHOLD, the value `below_threshold` uses
    below_threshold  face_cosine < threshold
    frames           the identity's frames in this view
    frames_below     how many of them are below the threshold
    share_below      frames_below / frames

Why 0.3: InsightFace's own tools (its GUI's `compare_embeddings`) call two normed
`buffalo_l` embeddings the same person from 0.4, "uncertain" from 0.35 and different
below. Video frames of the right person fall under 0.4 often enough (profile views, blur,
small faces) that cutting there throws away the hard frames a pose-aware trainer needs
most; 0.3 keeps a margin below InsightFace's "different person" line, so a frame flagged
at 0.3 is one InsightFace itself would call somebody else. It is a default for looking, not
a calibrated verification threshold: compare `face_cosine` to any value in a query.

Filtering with it: `export-json --where` and `FeatureDataset(where=...)` take a predicate
over `frames` on a connection that has the view, and two macros keep it short:

    suspicious_frame(path, min_cosine := 0.3)      the frame's face_cosine < min_cosine
    suspicious_identity(identity, share := 0.2)    share_below of the identity > share

    featstore export-json --model dinov2_vitb14 --where "NOT suspicious_frame(image_path)"
    FeatureDataset(store, model="dinov2_vitb14",
                   where="NOT suspicious_frame(image_path, min_cosine := 0.5)")
    --where "NOT suspicious_identity(identity)"    (drop identities that look mixed)

Image paths match across models extracted in one run (one base dir). The macros use a
one-row list subquery rather than `image_path NOT IN (SELECT ...)`: DuckDB may plan an `IN`
as a hash join whose output is not in the files' order, and export-json streams identities
in file order (it refuses a scan that comes back out of order); the list subquery is a
nested-loop join that streams the frames in order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

VIEW = "identity_consistency"
MACRO = "suspicious_frame"
IDENTITY_MACRO = "suspicious_identity"
DEFAULT_SHARE = 0.2
ARCFACE_PREFIX = "arcface_"
DEFAULT_THRESHOLD = 0.3
RANGE_MACRO = "_identity_consistency_range"  # the view over a range of identities


def is_arcface_model(name: str) -> bool:
    """Whether a stored model holds ArcFace embeddings (`arcface_<pack>`, docs/formats.md)."""
    return name.startswith(ARCFACE_PREFIX)


def consistency_sql(
    source: str, threshold: float = DEFAULT_THRESHOLD, *, dim: int, where: str = "true"
) -> str:
    """The view's query over `source`: a relation with the store's columns, ArcFace rows
    (those where `where` holds: RANGE_MACRO's identity range).

    `dim`: the ArcFace embeddings' length. Each identity's frame sum is one aggregate row
    of `dim` sums, made in one pass over its frames (a hash aggregate of identities x dim
    numbers); the frames then join it. Unnesting every vector into `dim` rows to sum them
    held frames x dim rows at once (1.4 GB at 100,000 frames).
    """
    t = float(threshold)
    sums = ", ".join(f"sum(e[{i}])" for i in range(1, max(int(dim), 1) + 1))
    return f"""
        WITH arc AS (
            SELECT model, identity, role, image_path, frame_index, features::FLOAT[] AS e
            FROM {source}
            WHERE model LIKE '{ARCFACE_PREFIX}%' AND status = 'ok' AND features IS NOT NULL
              AND ({where})
        ),
        face AS (
            SELECT model, identity, any_value(e) AS e FROM arc WHERE role = 'face'
            GROUP BY model, identity
        ),
        frame_sum AS (  -- the mean's direction: the sum of the unit vectors
            SELECT model, identity, list_value({sums}) AS e
            FROM arc WHERE role = 'frame' GROUP BY model, identity
        ),
        scored AS (
            SELECT f.model, f.identity, f.image_path, f.frame_index,
                   list_cosine_similarity(f.e, face.e)::DOUBLE AS face_cosine,
                   list_cosine_similarity(f.e::DOUBLE[], s.e[1:len(f.e)])::DOUBLE
                       AS mean_cosine
            FROM arc f
            JOIN frame_sum s ON s.model = f.model AND s.identity = f.identity
            LEFT JOIN face ON face.model = f.model AND face.identity = f.identity
            WHERE f.role = 'frame'
        )
        SELECT *, {t}::DOUBLE AS threshold, face_cosine < {t} AS below_threshold,
               count(*) OVER identity_frames AS frames,
               count(*) FILTER (face_cosine < {t}) OVER identity_frames AS frames_below,
               frames_below / frames AS share_below
        FROM scored
        WINDOW identity_frames AS (PARTITION BY model, identity)"""


def create_identity_consistency(
    con: duckdb.DuckDBPyConnection,
    source: str | None,
    threshold: float = DEFAULT_THRESHOLD,
    *,
    dim: int | None = None,
) -> bool:
    """Create the view and the `suspicious_frame` macro on `con` when `source` is not None.

    Args:
        source: a relation (table, registered dataset, table function) holding the ArcFace
            models' rows with the store's columns; rows of other models in it are ignored.
            Not the `images` view itself: the report replaces `images` by a view filtered
            with `--where`, which may use this view.
        dim: the longest ArcFace embedding (from the models' provenance); when None, one
            row of `source` is read to learn it.

    Returns:
        Whether the view was created.
    """
    if source is None:
        return False
    if dim is None:
        found = con.execute(
            f"""SELECT len(features::FLOAT[]) FROM {source}
                WHERE model LIKE '{ARCFACE_PREFIX}%' AND features IS NOT NULL LIMIT 1"""
        ).fetchone()
        dim = int(found[0]) if found else 1
    sql = consistency_sql(source, threshold, dim=dim)
    con.execute(f"CREATE OR REPLACE VIEW {VIEW} AS {sql}")
    # The view's rows for identities in [low, high) (high NULL: no end), the range put in
    # the scan itself: the view materialises its ArcFace rows once for its three readers,
    # and a filter on the view stays above that scan (it would read, and hold, every
    # vector of the store for each range). `featstore report` reads it range by range.
    within = "identity >= low AND (high IS NULL OR identity < high)"
    ranged = consistency_sql(source, threshold, dim=dim, where=within)
    con.execute(f"CREATE OR REPLACE MACRO {RANGE_MACRO}(low, high) AS TABLE {ranged}")
    create_macros(con, threshold)
    return True


def create_macros(con: duckdb.DuckDBPyConnection, threshold: float = DEFAULT_THRESHOLD) -> None:
    """`suspicious_frame` and `suspicious_identity` over the view (or a table so named)."""
    # A one-row list subquery, not `IN (SELECT ...)`: see the module docstring.
    con.execute(
        f"""CREATE OR REPLACE MACRO {MACRO}(path, min_cosine := {float(threshold)}) AS
            list_contains((SELECT coalesce(list(image_path), []::VARCHAR[]) FROM {VIEW}
                           WHERE face_cosine < min_cosine), path)"""
    )
    con.execute(
        f"""CREATE OR REPLACE MACRO {IDENTITY_MACRO}(name, share := {DEFAULT_SHARE}) AS
            list_contains((SELECT coalesce(list(DISTINCT identity), []::VARCHAR[]) FROM {VIEW}
                           WHERE share_below > share), name)"""
    )
