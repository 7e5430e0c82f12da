"""`--where`: one SQL expression over the `frames` columns, checked before any work.

A predicate is user text spliced into featstore's own queries, so it is checked to be
exactly what it claims, without ever running it:

1. DuckDB's own tokenizer: the text's parentheses balance outside strings, quoted names
   and comments, so it cannot close featstore's `(` and append SQL of its own (stacked
   statements, a `UNION`, an `OR` that escapes the caller's `AND`).
2. DuckDB's own parser (`json_serialize_sql`): `SELECT * FROM frames WHERE (<text>)` is one
   SELECT statement and nothing else. A subquery may read the store's views (`frames`,
   `images`, ...: "each identity's first ok frame" needs one) and nothing else: no table
   function (`read_csv`, `read_text`, `glob`, `duckdb_settings()`), no other table or
   schema, no CTE. Files are reachable from an expression only through a table function.
3. DuckDB's binder, on a private in-memory connection with external access disabled and
   its configuration locked, over empty tables with the columns and types of the views
   the predicate names: unknown columns, functions and type errors are caught while no
   file can be opened and there is no data to leak into a message.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from featstore.errors import InputError
from featstore.store import consistency, neighbors

if TYPE_CHECKING:
    import duckdb

MAX_WHERE_CHARS = 10_000  # a filter, not a program; also bounds the parser's work
# The views of `featstore.store.query` a subquery in a predicate may read.
STORE_VIEWS = (
    "images",
    "faces",
    "frames",
    "identities",
    "valid_frames",
    "identity_consistency",
    *neighbors.VIEWS,
)
_SHOWN_CHARS = 200  # of the predicate, in messages


def duckdb_error() -> type[Exception]:
    import duckdb

    return duckdb.Error


def evaluation_errors() -> tuple[type[Exception], ...]:
    """DuckDB errors a well-formed predicate can raise on some rows' values, at run time.

    (`CAST(identity AS INTEGER)` binds, then fails on the first name that is no number.)
    """
    import duckdb

    return (duckdb.ConversionException, duckdb.OutOfRangeException)


def columns_of(con: duckdb.DuckDBPyConnection, view: str) -> list[str]:
    return [row[0] for row in con.execute(f"DESCRIBE {view}").fetchall()]


def check_where(con: duckdb.DuckDBPyConnection, where: str | None) -> str:
    """`where` as a frame filter for `con`'s views, checked against the `frames` columns.

    The Dataset filters with the same predicate as `export-json --where`.

    Raises:
        InputError: the predicate is not one expression over the columns of `frames`.
    """
    return check_where_with(con, where, columns_of(con, "frames"))


def check_where_with(con: duckdb.DuckDBPyConnection, where: str | None, columns: list[str]) -> str:
    """The frame filter as SQL, once it is known to be one expression over `frames`.

    `con` is only asked for the names and types of the `frames` columns; the predicate
    itself never runs on it here (see the module docstring for the three checks).
    """
    if where is None or not where.strip():
        return "true"
    if len(where) > MAX_WHERE_CHARS:
        raise where_error(
            where, f"{len(where)} characters, more than the {MAX_WHERE_CHARS} allowed", columns
        )
    # On its own lines, so a trailing `--` comment cannot swallow the rest of the query.
    predicate = f"(\n{where}\n)"
    _check_parentheses(where, columns)
    with _sandbox() as sandbox:
        statement = f"SELECT * FROM frames WHERE {predicate}"
        views = _check_one_expression(sandbox, statement, where, columns)
        for view in sorted(views | {"frames"}):  # empty, with the columns of con's views
            types = con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {view})")
            definition = ", ".join(f"{_quote(name)} {kind}" for name, kind in types.fetchall())
            sandbox.execute(f"CREATE TABLE {view} ({definition})")
        if _has_view(con, consistency.VIEW):  # the macros over it, as on con
            _copy_shape(con, sandbox, [consistency.VIEW], views)
            consistency.create_macros(sandbox)
        if _has_view(con, neighbors.IDENTITY_VIEW):
            _copy_shape(con, sandbox, [neighbors.IDENTITY_VIEW, neighbors.IMAGE_VIEW], views)
            neighbors.create_macros(sandbox)
        try:
            sandbox.execute(f"{statement} LIMIT 0").fetchall()
        except duckdb_error() as exc:
            raise where_error(where, str(exc), columns) from exc
    return predicate


def where_error(where: str, message: str, columns: list[str]) -> InputError:
    first_line = message.strip().splitlines()[0] if message.strip() else message
    # The predicate is wrapped as "(\n{where}\n)": an error on the closing line points at
    # a `)` the user never typed, so say what it means instead.
    unclosed = "is never closed" in first_line or (
        'near ")"' in first_line and not where.rstrip().endswith(")")
    )
    if f"LINE {where.count(chr(10)) + 3}:" in message or unclosed:
        first_line = (
            f"{first_line.split(':')[0]}: it ends too early (an unclosed parenthesis, or an "
            "operator without its right-hand side)"
        )
    shown = where if len(where) <= _SHOWN_CHARS else where[:_SHOWN_CHARS] + "..."
    return InputError(
        f"--where {shown!r} is not a usable filter over the frames: {first_line}\n"
        f"The columns of frames: {', '.join(columns)}.\n"
        "Hint: write one SQL expression over those columns (no statements; subqueries may "
        "read the store's views only), e.g. --where 'abs(avg_angle) < 30'."
    )


def where_failed(where: str, exc: Exception, columns: list[str]) -> InputError:
    """A predicate that was accepted but failed on the stored values (see `evaluation_errors`)."""
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    shown = where if len(where) <= _SHOWN_CHARS else where[:_SHOWN_CHARS] + "..."
    return InputError(
        f"--where {shown!r} failed on the rows of the store: {first_line}\n"
        f"The columns of frames: {', '.join(columns)}.\n"
        "Hint: guard conversions that some rows cannot take, e.g. TRY_CAST(identity AS "
        "INTEGER) > 0 (NULL where the name is no number)."
    )


def _copy_shape(
    con: duckdb.DuckDBPyConnection,
    sandbox: duckdb.DuckDBPyConnection,
    names: list[str],
    made: set[str],
) -> None:
    """Empty tables on `sandbox` shaped like `con`'s views `names` (those not in `made`),
    for macros that read them."""
    for name in names:
        if name in made:
            continue
        types = con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {name})")
        definition = ", ".join(f"{_quote(n)} {k}" for n, k in types.fetchall())
        sandbox.execute(f"CREATE TABLE {name} ({definition})")


def _has_view(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    found = con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = ?", [name])
    row = found.fetchone()
    return bool(row and row[0])


def _sandbox() -> duckdb.DuckDBPyConnection:
    import duckdb

    return duckdb.connect(
        config={
            "enable_external_access": False,
            "temp_directory": "",  # DuckDB would allow its temp directory (`.tmp`)
            "autoload_known_extensions": False,
            "autoinstall_known_extensions": False,
            "lock_configuration": True,
        }
    )


def _check_parentheses(where: str, columns: list[str]) -> None:
    """Refuse a predicate whose `)` closes a parenthesis it did not open."""
    import duckdb

    try:
        tokens = duckdb.tokenize(where)
    except duckdb_error() as exc:
        raise where_error(where, str(exc), columns) from exc
    depth = 0
    ends = [start for start, _ in tokens[1:]] + [len(where)]
    for (start, kind), end in zip(tokens, ends, strict=True):
        if kind != duckdb.token_type.operator:
            continue
        for char in where[start:end]:
            depth += {"(": 1, ")": -1}.get(char, 0)
            if depth < 0:
                raise where_error(
                    where, "a ')' closes a parenthesis the predicate did not open", columns
                )
    if depth:
        raise where_error(where, "a '(' is never closed", columns)


def _check_one_expression(
    sandbox: duckdb.DuckDBPyConnection, statement: str, where: str, columns: list[str]
) -> set[str]:
    """`statement` parses as one `SELECT * FROM frames WHERE <expr>`; the views it reads.

    Subqueries in `<expr>` may read only `STORE_VIEWS` (see the module docstring).
    """
    try:
        text = sandbox.execute("SELECT json_serialize_sql(?)", [statement]).fetchone()
    except duckdb_error() as exc:
        raise where_error(where, str(exc), columns) from exc
    tree: dict[str, Any] = json.loads(text[0]) if text else {"error": True}
    if tree.get("error"):
        message = str(tree.get("error_message", "cannot parse it"))
        raise where_error(where, f"Parser Error: {message}", columns)
    statements: list[dict[str, Any]] = tree.get("statements") or []
    node = statements[0].get("node", {}) if len(statements) == 1 else {}
    source = node.get("from_table") or {}
    plain = (
        node.get("type") == "SELECT_NODE"
        and not node.get("modifiers")
        and not (node.get("cte_map") or {}).get("map")
        and not node.get("group_expressions")
        and node.get("having") is None
        and node.get("qualify") is None
        and node.get("sample") is None
        and len(node.get("select_list", [])) == 1
        and source.get("type") == "BASE_TABLE"
        and source.get("table_name") == "frames"
    )
    if not plain or node.get("where_clause") is None:
        raise where_error(where, "it is not one SQL expression", columns)
    views: set[str] = set()
    refused = _foreign_source(node["where_clause"], views)
    if refused is not None:
        raise where_error(
            where,
            f"a subquery may read only the views {', '.join(STORE_VIEWS)}; this one reads "
            f"{refused}",
            columns,
        )
    return views


def _foreign_source(tree: Any, views: set[str]) -> str | None:
    """What a parsed expression reads besides the store's views (None: nothing); the views
    it reads are added to `views`."""
    if isinstance(tree, list):
        return next((r for r in (_foreign_source(v, views) for v in tree) if r), None)
    if not isinstance(tree, dict):
        return None
    if (tree.get("cte_map") or {}).get("map"):
        return "a WITH clause"
    kind = tree.get("type")
    if kind == "BASE_TABLE" and "table_name" in tree:
        name = tree["table_name"]
        if tree.get("schema_name") or tree.get("catalog_name") or name not in STORE_VIEWS:
            qualified = ".".join(p for p in (tree.get("schema_name"), name) if p)
            return f"the table {qualified!r}"
        views.add(name)
    elif kind == "TABLE_FUNCTION" and "function" in tree:
        name = (tree["function"] or {}).get("function_name", "?")
        return f"the table function {name!r}"
    elif kind in ("EXPRESSION_LIST", "DELIM_GET", "COLUMN_DATA", "SHOW_REF", "PIVOT"):
        return f"a {kind.lower().replace('_', ' ')}"
    return next((r for r in (_foreign_source(v, views) for v in tree.values()) if r), None)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
