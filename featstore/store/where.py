"""`--where`: one SQL predicate over the `frames` view, checked before any work."""

from __future__ import annotations

from typing import TYPE_CHECKING

from featstore.errors import InputError

if TYPE_CHECKING:
    import duckdb


def duckdb_error() -> type[Exception]:
    import duckdb

    return duckdb.Error


def columns_of(con: duckdb.DuckDBPyConnection, view: str) -> list[str]:
    return [row[0] for row in con.execute(f"DESCRIBE {view}").fetchall()]


def check_where(con: duckdb.DuckDBPyConnection, where: str | None) -> str:
    """`where` as a frame filter for `con`'s views, checked against the `frames` columns.

    The Dataset filters with the same predicate as `export-json --where`.

    Raises:
        InputError: DuckDB cannot parse or bind the predicate over `frames`.
    """
    return check_where_with(con, where, columns_of(con, "frames"))


def check_where_with(con: duckdb.DuckDBPyConnection, where: str | None, columns: list[str]) -> str:
    """The frame filter as SQL, after DuckDB has parsed and bound it against `frames`."""
    if where is None or not where.strip():
        return "true"
    # On its own lines, so a trailing `--` comment cannot swallow the rest of the query.
    predicate = f"(\n{where}\n)"
    try:
        con.execute(f"SELECT * FROM frames WHERE {predicate} LIMIT 0").fetchall()
    except duckdb_error() as exc:
        raise where_error(where, str(exc), columns) from exc
    return predicate


def where_error(where: str, message: str, columns: list[str]) -> InputError:
    first_line = message.strip().splitlines()[0] if message.strip() else message
    # The predicate is wrapped as "(\n{where}\n)": an error on the closing line points at
    # a `)` the user never typed, so say what it means instead.
    if f"LINE {where.count(chr(10)) + 3}:" in message:
        first_line = (
            f"{first_line.split(':')[0]}: it ends too early (an unclosed parenthesis, or an "
            "operator without its right-hand side)"
        )
    return InputError(
        f"--where {where!r} is not a usable filter over the frames: {first_line}\n"
        f"The columns of frames: {', '.join(columns)}.\n"
        "Hint: write an SQL predicate over those columns, e.g. --where 'abs(avg_angle) < 30'."
    )
