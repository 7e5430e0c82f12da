"""The views every reader queries, created on a DuckDB connection over a store's rows.

    images        every row of every model
    faces         role = 'face'
    frames        role = 'frame'
    identities    one row per (model, identity): frontal status, frame counts, valid
    valid_frames  `ok` frames of valid identities, with the frontal image's columns
                  alongside (`face_features`, `face_landmarks_2d`, ...)

Delta stores plain lists; the views cast them back to fixed-size DuckDB arrays
(`FLOAT[768]`, `FLOAT[2][5]`), so `array_cosine_similarity` and friends work directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

VIEWS = ("images", "faces", "frames", "identities", "valid_frames")

# Fixed-shape columns and their DuckDB array types (features depend on the model's dim).
ARRAY_COLUMNS = {
    "landmarks_2d": "FLOAT[2][5]",
    "landmarks_3d": "FLOAT[3][5]",
    "box": "FLOAT[4]",
    "spherical_angles": "FLOAT[5]",
    # The head pose (face000-pose-v1); tables written before it have no such columns.
    "euler_angles": "FLOAT[3]",
    "rotation_matrix": "FLOAT[3][3]",
    "pose_landmarks_3d": "FLOAT[3][5]",
    # featstore-pose-sqpnp-v1 (docs/pose.md), beside it.
    "sqpnp_euler_angles": "FLOAT[3]",
    "sqpnp_rotation_matrix": "FLOAT[3][3]",
    "sqpnp_pose_landmarks_3d": "FLOAT[3][5]",
}


def create_views(
    con: duckdb.DuckDBPyConnection, source: str, *, dim: int | None, columns: set[str]
) -> None:
    """The views over `source` (a table expression of the store's rows).

    Args:
        dim: the feature dim when every model shares one (features become `FLOAT[dim]`);
            None when models differ (features stay `FLOAT[]`: pass a model to compare them).
        columns: the columns `source` has (a cast applies only to those present).
    """
    casts = [f"{name}::{kind} AS {name}" for name, kind in ARRAY_COLUMNS.items() if name in columns]
    if dim is not None:
        casts.insert(0, f"features::FLOAT[{dim}] AS features")
    replace = f" REPLACE ({', '.join(casts)})" if casts else ""
    con.execute(f"CREATE VIEW images AS SELECT *{replace} FROM {source}")
    con.execute("CREATE VIEW faces AS SELECT * FROM images WHERE role = 'face'")
    con.execute("CREATE VIEW frames AS SELECT * FROM images WHERE role = 'frame'")
    con.execute(
        """CREATE VIEW identities AS
           SELECT model, identity,
                  any_value(status) FILTER (role = 'face') AS face_status,
                  count(*) FILTER (role = 'frame') AS frames_total,
                  count(*) FILTER (role = 'frame' AND status = 'ok') AS frames_ok,
                  count(*) FILTER (role = 'frame' AND status = 'no_face') AS frames_no_face,
                  count(*) FILTER (role = 'frame' AND status = 'unreadable')
                      AS frames_unreadable,
                  coalesce(bool_or(role = 'face' AND status = 'ok'), false)
                      AND count(*) FILTER (role = 'frame' AND status = 'ok') > 0 AS valid
           FROM images GROUP BY model, identity"""
    )
    con.execute(
        """CREATE VIEW valid_frames AS
           SELECT f.*, face.image_path AS face_image_path, face.features AS face_features,
                  face.landmarks_2d AS face_landmarks_2d,
                  face.landmarks_3d AS face_landmarks_3d, face.box AS face_box
           FROM frames f
           JOIN faces face ON face.model = f.model AND face.identity = f.identity
           -- an ok frame of an identity whose frontal image is ok: the identity has
           -- at least one ok frame, so it is valid (no aggregate over all rows needed)
           WHERE f.status = 'ok' AND face.status = 'ok'"""
    )


def lock_down(con: duckdb.DuckDBPyConnection, readable: list[str]) -> None:
    """Let `con` read `readable` and nothing else, write no file, and change no setting.

    Queries (`featstore query`, `--where`) then reach the store's rows only: no
    `COPY ... TO`, no `read_csv('/etc/passwd')`, no ATTACH, no extension download.
    Spilling is off: DuckDB adds its temp directory (`.tmp` of the working folder) to the
    allowed paths, which would let a query read, list and write files there.
    """
    con.execute("SET temp_directory = ''")
    # DuckDB prints a progress bar to stdout (fd 1) once a query runs 2 s; what a query
    # writes there is data (`query --format csv > out.csv`), so never.
    con.execute("SET enable_progress_bar = false")
    con.execute("SET enable_progress_bar_print = false")
    if readable:
        con.execute("SET allowed_paths = ?", [readable])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def describe_views(con: duckdb.DuckDBPyConnection) -> str:
    """`view(col type, ...)` lines, shown when a query fails so users see what exists."""
    lines = []
    for view in VIEWS:
        columns = con.execute(f"DESCRIBE {view}").fetchall()
        lines.append(f"  {view}: " + ", ".join(f"{c[0]} {c[1]}" for c in columns))
    return "\n".join(lines)


def array_hint(exc: Exception, model: str | None) -> str:
    """Models of different dims make the feature columns FLOAT[], which array_* refuse."""
    if model is None and "array_" in str(exc) and "FLOAT[]" in str(exc):
        return (
            "\nHint: the store holds models of different dimensions, so features are FLOAT[] "
            "(no fixed size); restrict the query to one model with model= (CLI: --model NAME)."
        )
    return ""


def sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
