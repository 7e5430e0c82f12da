"""What a newcomer meets on the first day: the command line's small promises (issue 13)."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner, Result
from conftest import Extracted
from featstore_cli.main import main

from featstore.errors import InputError
from featstore.store.where import check_where_with


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def test_query_max_rows_limits_the_rows_shown(extracted: Extracted) -> None:
    sql = "SELECT * FROM range(100) t(i)"
    shown = {}
    for max_rows in (10, 30):
        result = invoke("query", "--store", extracted.store, sql, "--max-rows", max_rows)
        assert result.exit_code == 0, result.output
        shown[max_rows] = len(re.findall(r"^│\s+\d+ │$", result.output, flags=re.M))
        assert "(100 rows; more with --max-rows N, all with --format csv)" in result.output
    assert shown == {10: 10, 30: 30}
    everything = invoke("query", "--store", extracted.store, sql, "--max-rows", 100)
    assert len(re.findall(r"^│\s+\d+ │$", everything.output, flags=re.M)) == 100
    assert "more with --max-rows" not in everything.output


def test_query_output_says_what_it_wrote(extracted: Extracted, tmp_path: Path) -> None:
    sql = "SELECT identity FROM identities"
    for fmt in ("table", "csv", "parquet"):
        out = tmp_path / f"result.{fmt}"
        result = invoke("query", "--store", extracted.store, sql, "--format", fmt, "--output", out)
        assert result.exit_code == 0, result.output
        assert re.search(rf"wrote \d+ rows to {re.escape(str(out))}", result.output)
        assert out.stat().st_size > 0


def test_report_store_is_a_plain_string() -> None:
    """A URI reaches the library whole (click.Path turned s3://b into s3:/b)."""
    result = invoke("report", "--store", "nosuch://bucket/faces", "--out", "r.html")
    assert result.exit_code == 1
    assert "nosuch://bucket/faces" in result.output
    assert "does not exist" not in result.output


def test_info_on_an_imported_store_prints_no_none(extracted: Extracted, tmp_path: Path) -> None:
    exported = tmp_path / "valid.json"
    assert invoke("export-json", "--store", extracted.store, "--out", exported).exit_code == 0
    store = tmp_path / "imported"
    result = invoke("import-json", exported, "--store", store)
    assert result.exit_code == 0, result.output
    info = invoke("info", "--store", store)
    assert info.exit_code == 0, info.output
    assert "None" not in info.output
    assert "source json" in info.output
    extracted_info = invoke("info", "--store", extracted.store).output
    assert "det_size 640" in extracted_info and "None" not in extracted_info


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("abs(avg_angle < 30", "it ends too early"),
        ("avg_angle <", "it ends too early"),
        ("avg_angel < 30", 'column "avg_angel" not found'),
    ],
)
def test_where_typo_never_shows_a_parenthesis_never_typed(where: str, expected: str) -> None:
    con = duckdb.connect()
    con.execute("CREATE VIEW frames AS SELECT 1.0 AS avg_angle")
    with pytest.raises(InputError, match=re.escape(expected)) as err:
        check_where_with(con, where, ["avg_angle"])
    assert 'near ")"' not in str(err.value)
