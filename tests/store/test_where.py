"""`--where` is one SQL expression over the frames columns: nothing else runs, nothing leaks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from conftest import Extracted

from featstore.errors import InputError
from featstore.store.where import MAX_WHERE_CHARS, check_where


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect() as con:
        con.execute(
            "CREATE TABLE images AS SELECT * FROM (VALUES "
            "('007', 'frame', 1.5::FLOAT, [1, 2, 3, 4]::FLOAT[4]), "
            "('x=y', 'frame', -3.0::FLOAT, NULL)) t(identity, role, avg_angle, box)"
        )
        con.execute("CREATE VIEW frames AS SELECT * FROM images WHERE role = 'frame'")
        yield con


def stacked(target: Path) -> str:
    return f"1=1) ; COPY (SELECT 42) TO '{target}'; SELECT (1"


@pytest.mark.parametrize(
    "where",
    [
        "abs(avg_angle) < 30",
        "identity = '007' OR identity LIKE '%=%'",
        "box[1] > 0 AND avg_angle IS NOT NULL",
        "(avg_angle > 0) -- a comment ) (",
        "identity = ')' OR identity = '('",
        "\"identity\" IN ('a', 'b)')",
        "identity IN (SELECT identity FROM images WHERE role = 'face' AND avg_angle IS NULL)",
        "avg_angle = (SELECT max(f.avg_angle) FROM frames f WHERE f.identity = frames.identity)",
        "EXISTS (SELECT 1)",
    ],
)
def test_expressions_pass(con: duckdb.DuckDBPyConnection, where: str) -> None:
    predicate = check_where(con, where)
    con.execute(f"SELECT count(*) FROM frames WHERE {predicate} AND role = 'frame'").fetchall()


def test_stacked_statements_are_refused_and_never_run(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    target = tmp_path / "x.csv"
    for where in (
        stacked(target),
        f"1=1; COPY (SELECT 42) TO '{target}'",
        f"true\n); COPY (SELECT 42) TO '{target}'; SELECT (\n1",
    ):
        with pytest.raises(InputError, match="is not a usable filter"):
            check_where(con, where)
    assert not target.exists()


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ("1=1) OR (1=1", "closes a parenthesis"),
        ("(1=1", "never closed"),
        ("true) UNION SELECT * FROM frames WHERE (true", "closes a parenthesis"),
        (
            "CAST((SELECT string_agg(column0, '|') FROM read_csv('/etc/passwd', header=false)) "
            "AS INTEGER) = 1",
            "reads the table function 'read_csv'",
        ),
        ("EXISTS (FROM glob('/etc/*'))", "reads the table function 'glob'"),
        ("EXISTS (SELECT 1 FROM duckdb_settings())", "the table function 'duckdb_settings'"),
        ("EXISTS (FROM information_schema.tables)", "reads the table 'information_schema.tables'"),
        ("EXISTS (FROM '/etc/passwd')", "reads the table '/etc/passwd'"),
        ("identity IN (WITH t AS (FROM frames) SELECT identity FROM t)", "a WITH clause"),
        ("EXISTS (FROM frames JOIN read_text('/etc/passwd') ON true)", "'read_text'"),
        ("EXISTS (SELECT 1 FROM no_such_view)", "reads the table 'no_such_view'"),
        ("length(read_text('/etc/passwd')) > 0", "read_text"),
        ("no_such_column > 1", 'column "no_such_column" not found'),
        ("x" * (MAX_WHERE_CHARS + 1), "more than the"),
    ],
)
def test_refused(con: duckdb.DuckDBPyConnection, where: str, reason: str) -> None:
    with pytest.raises(InputError) as info:
        check_where(con, where)
    message = str(info.value)
    assert reason in message
    assert "is not a usable filter" in message and "columns of frames: identity" in message
    assert "root:" not in message  # nothing of /etc/passwd is ever read, so never shown


def test_file_functions_cannot_read_outside(con: duckdb.DuckDBPyConnection) -> None:
    # A scalar that reads a file would need a table function, hence a subquery; and the
    # binding check runs where external access is off.
    with pytest.raises(InputError) as info:
        check_where(con, "identity IN (FROM read_csv('/etc/passwd'))")
    assert "root:" not in str(info.value)


# --- end to end: every command that takes --where ----------------------------------------


def test_no_command_runs_stacked_statements(extracted: Extracted, tmp_path: Path) -> None:
    from click.testing import CliRunner
    from featstore_cli.main import main

    from featstore import FeatureDataset

    target = tmp_path / "x.csv"
    runner = CliRunner()
    for command in (
        ["export-json", "--out", str(tmp_path / "out.json")],
        ["report", "--out", str(tmp_path / "r.html")],
    ):
        result = runner.invoke(
            main, [*command, "--store", str(extracted.store), "--where", stacked(target)]
        )
        assert result.exit_code == 1, result.output
        assert "is not a usable filter" in result.output
    with pytest.raises(InputError, match="is not a usable filter"):
        FeatureDataset(extracted.store, where=stacked(target), cache_dir=tmp_path / "cache")
    leak = "CAST((SELECT string_agg(column0, '|') FROM read_csv('/etc/passwd')) AS INTEGER) = 1"
    result = runner.invoke(
        main,
        ["export-json", "--store", str(extracted.store), "--out", str(tmp_path / "o.json")]
        + ["--where", leak],
    )
    assert result.exit_code == 1 and "root:" not in result.output
    assert not target.exists()


def test_dataset_where_failing_on_the_rows_is_an_input_error(
    extracted: Extracted, tmp_path: Path
) -> None:
    from featstore import FeatureDataset

    where = "CAST(identity AS INTEGER) > 0"
    with pytest.raises(InputError) as info:
        FeatureDataset(extracted.store, where=where, cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert f"--where {where!r} failed on the rows of the store: Conversion Error" in message
    assert "columns of frames: identity" in message and "Hint: guard" in message
