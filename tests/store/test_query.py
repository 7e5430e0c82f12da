"""featstore query / info and the Store views over a real extracted store."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import DIM, Extracted
from featstore_cli.main import main
from store_checks import table_rows

from featstore.errors import QueryError, StoreError
from featstore.store import Store
from featstore.store.query import VIEWS, store_info
from featstore.synthetic.awkward import AWKWARD_IDENTITIES, BAD_FRAMES_IDENTITY


def _rows(extracted: Extracted) -> list[dict]:
    return table_rows(extracted.store).to_pylist()


def test_views_exist_and_images_has_every_row(extracted: Extracted) -> None:
    store = Store(extracted.store)
    assert store.sql("SELECT count(*) AS n FROM images")["n"][0].as_py() == len(_rows(extracted))
    with store.connect() as con:
        names = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
    assert set(VIEWS) <= names


def test_identity_stays_varchar_and_exact(extracted: Extracted) -> None:
    got = set(
        Store(extracted.store).sql("SELECT DISTINCT identity FROM images")["identity"].to_pylist()
    )
    assert set(AWKWARD_IDENTITIES) <= got
    types = Store(extracted.store).sql("SELECT typeof(identity) AS t FROM images LIMIT 1")
    assert types["t"][0].as_py() == "VARCHAR"


def test_features_are_fixed_arrays_for_cosine_similarity(extracted: Extracted) -> None:
    table = Store(extracted.store).sql(
        "SELECT typeof(features) AS t, array_cosine_similarity(features, face_features) AS c "
        "FROM valid_frames"
    )
    assert set(table["t"].to_pylist()) == {f"FLOAT[{DIM}]"}
    assert all(-1.0001 <= c <= 1.0001 for c in table["c"].to_pylist())


def test_identities_view_counts_match_rows(extracted: Extracted) -> None:
    rows = _rows(extracted)
    table = (
        Store(extracted.store)
        .sql(f"SELECT * FROM identities WHERE identity = '{BAD_FRAMES_IDENTITY}'")
        .to_pylist()[0]
    )
    frames = [r for r in rows if r["identity"] == BAD_FRAMES_IDENTITY and r["role"] == "frame"]
    assert table["frames_total"] == len(frames)
    assert table["frames_ok"] == sum(r["status"] == "ok" for r in frames)
    assert table["frames_unreadable"] == sum(r["status"] == "unreadable" for r in frames)
    assert table["frames_no_face"] == sum(r["status"] == "no_face" for r in frames)
    assert table["valid"] is True


def test_valid_frames_are_ok_frames_of_valid_identities(extracted: Extracted) -> None:
    rows = _rows(extracted)
    face_ok = {r["identity"] for r in rows if r["role"] == "face" and r["status"] == "ok"}
    with_ok_frame = {r["identity"] for r in rows if r["role"] == "frame" and r["status"] == "ok"}
    valid = face_ok & with_ok_frame
    expected = sorted(
        (r["identity"], r["frame_index"])
        for r in rows
        if r["role"] == "frame" and r["status"] == "ok" and r["identity"] in valid
    )
    got = Store(extracted.store).sql("SELECT identity, frame_index FROM valid_frames").to_pylist()
    assert sorted((r["identity"], r["frame_index"]) for r in got) == expected
    assert "only_video" not in {r["identity"] for r in got}


def test_sql_error_lists_views_and_columns(extracted: Extracted) -> None:
    with pytest.raises(QueryError, match="(?s)frames_okk.*identities: model VARCHAR"):
        Store(extracted.store).sql("SELECT frames_okk FROM identities")


def test_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a featstore store"):
        Store(tmp_path)
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "missing")


def test_store_info_counts_without_features(extracted: Extracted) -> None:
    info = store_info(Store(extracted.store))
    summary = extracted.summary.store_counts[info.models[0].name]
    assert info.identities[info.models[0].name] == summary.identities
    assert info.valid_identities[info.models[0].name] == summary.valid_identities
    assert info.disk_bytes > 0


def test_cli_query_formats(extracted: Extracted, tmp_path: Path) -> None:
    runner = CliRunner()
    sql = "SELECT identity, frames_ok FROM identities ORDER BY identity"
    table = runner.invoke(main, ["query", "--store", str(extracted.store), sql])
    assert table.exit_code == 0, table.output
    assert "007" in table.output
    as_csv = runner.invoke(main, ["query", "--store", str(extracted.store), sql, "--format", "csv"])
    assert as_csv.exit_code == 0, as_csv.output
    parsed = list(csv.DictReader(io.StringIO(as_csv.output)))
    assert "007" in [r["identity"] for r in parsed]  # not the number 7
    out = tmp_path / "r.json"
    as_json = runner.invoke(
        main,
        ["query", "--store", str(extracted.store), sql, "--format", "json", "--output", str(out)],
    )
    assert as_json.exit_code == 0, as_json.output
    assert [r["identity"] for r in json.loads(out.read_text("utf-8"))] == [
        r["identity"] for r in parsed
    ]
    pq_out = tmp_path / "r.parquet"
    as_pq = runner.invoke(
        main,
        [
            "query",
            "--store",
            str(extracted.store),
            sql,
            "--format",
            "parquet",
            "--output",
            str(pq_out),
        ],
    )
    assert as_pq.exit_code == 0, as_pq.output
    assert pq.read_table(pq_out).num_rows == len(parsed)


def test_cli_query_error_exits_1_without_traceback(extracted: Extracted) -> None:
    result = CliRunner().invoke(main, ["query", "--store", str(extracted.store), "SELEC nope"])
    assert result.exit_code == 1
    assert "Views and their columns" in result.output
    assert "Traceback" not in result.output


def test_cli_info(extracted: Extracted, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["info", "--store", str(extracted.store)])
    assert result.exit_code == 0, result.output
    assert f"dim {DIM}" in result.output and "valid" in result.output
    bad = CliRunner().invoke(main, ["info", "--store", str(tmp_path)])
    assert bad.exit_code == 1 and "not a featstore store" in bad.output


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT content FROM read_text('.tmp/s.txt')",
        "COPY (SELECT * FROM images) TO '.tmp/dump.parquet'",
        "SELECT * FROM glob('.tmp/*')",
    ],
)
def test_query_cannot_reach_duckdb_s_temp_directory(
    extracted: Extracted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sql: str
) -> None:
    """DuckDB allows its temp directory (`.tmp` of the working folder) to a locked
    connection: the query connection spills nowhere, so reads and writes there are refused."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".tmp").mkdir()
    (tmp_path / ".tmp" / "s.txt").write_text("secret")
    result = CliRunner().invoke(main, ["query", "--store", str(extracted.store), sql])
    assert result.exit_code == 1, result.output
    assert "secret" not in result.output and "disabled by configuration" in result.output
    assert sorted(p.name for p in (tmp_path / ".tmp").iterdir()) == ["s.txt"]


def test_query_connection_prints_no_progress_bar(extracted: Extracted) -> None:
    """DuckDB prints its progress bar to stdout (fd 1) once a query runs 2 s: the first bytes
    of `query --format csv > out.csv` were `\\r100% ▕███…`. Output is data: no bar."""
    shown = Store(extracted.store).sql(
        "SELECT current_setting('enable_progress_bar') AS bar, "
        "current_setting('enable_progress_bar_print') AS printed"
    )
    assert shown.to_pylist() == [{"bar": False, "printed": False}]
