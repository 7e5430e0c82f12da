"""Damaged and foreign stores give a clear error, read commands never abort, and every
Parquet file featstore writes (query results, the tables' own files) reads back everywhere."""

from __future__ import annotations

import ast
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import MODEL, Extracted, copy_store
from delta_checks import build_store, featstore, run

from featstore.errors import StoreError
from featstore.store import Store

READ_COMMANDS = {
    "info": ["info"],
    "query": ["query", "select count(*) from images"],
    "history": ["history"],
    "export-json": ["export-json", "--out", "{tmp}/out.json"],
}


def _refused(store: Path, tmp_path: Path, *needles: str, command: str = "query") -> str:
    """Run a read command on `store`: exit 1, no traceback, a message holding `needles`."""
    args = [a.replace("{tmp}", str(tmp_path)) for a in READ_COMMANDS[command]]
    done = run(featstore(args[0], "--store", str(store), *args[1:]), expect=1)
    assert "Traceback" not in done.stderr, done.stderr
    assert "Error:" in done.stderr, done.stderr
    for needle in needles:
        assert needle in done.stderr, (needle, done.stderr)
    return done.stderr


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic store: 6 identities, 3 commits (versions 1-3 after the create)."""
    store = tmp_path_factory.mktemp("faults") / "store"
    build_store(store, 6, per_commit=2)
    return store


def test_a_model_folder_without_its_delta_log_is_named_as_damaged(
    tmp_path: Path, small_store: Path
) -> None:
    store = copy_store(small_store, tmp_path / "store")
    shutil.rmtree(store / f"model={MODEL}" / "_delta_log")
    with pytest.raises(StoreError, match=r"model=dinov2_vits14.*_delta_log"):
        Store(store).connect()
    for command in ("query", "info", "export-json"):
        _refused(store, tmp_path, str(store), "_delta_log", "Hint:", command=command)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing-first"])
def test_a_corrupt_delta_log_is_a_store_error(
    tmp_path: Path, small_store: Path, damage: str
) -> None:
    store = copy_store(small_store, tmp_path / "store")
    log = store / f"model={MODEL}" / "_delta_log"
    if damage == "garbage":
        (log / "00000000000000000003.json").write_text("this is not json\n")
    elif damage == "truncated":
        data = (log / "00000000000000000001.json").read_bytes()
        (log / "00000000000000000001.json").write_bytes(data[: len(data) // 2])
    else:  # the commit holding the protocol and metadata is gone
        (log / "00000000000000000000.json").unlink()
    with pytest.raises(StoreError, match=r"model=dinov2_vits14"):
        Store(store).sql("select count(*) from images")
    for command in ("query", "info", "history"):
        _refused(store, tmp_path, f"model={MODEL}", "Hint:", command=command)


def test_a_delta_table_of_another_program_is_refused(tmp_path: Path, small_store: Path) -> None:
    from deltalake import write_deltalake

    store = copy_store(small_store, tmp_path / "store")
    write_deltalake(str(store / "model=other"), pa.table({"x": [1, 2, 3]}), name="other")
    message = _refused(store, tmp_path, "model=other", "did not write", command="info")
    assert "Hint:" in message
    _refused(store, tmp_path, "model=other", command="query")
    # Naming the model featstore wrote still works.
    done = run(featstore("query", "--store", str(store), "--model", MODEL, "select 1"))
    assert "1" in done.stdout


def test_a_version_that_does_not_exist_names_the_version_and_history(
    tmp_path: Path, small_store: Path
) -> None:
    with pytest.raises(StoreError, match=r"no version 99"):
        Store(small_store).sql("select 1", version=99)
    for command in ("query", "info", "export-json"):
        args = [a.replace("{tmp}", str(tmp_path)) for a in READ_COMMANDS[command]]
        done = run(
            featstore(args[0], "--store", str(small_store), *args[1:], "--version", "99"),
            expect=1,
        )
        assert "Traceback" not in done.stderr
        assert "no version 99" in done.stderr and "featstore history" in done.stderr
        assert str(small_store) in done.stderr


def test_a_store_path_holding_percent_is_refused_clearly(tmp_path: Path) -> None:
    store = tmp_path / "a%41b" / "store"
    with pytest.raises(StoreError, match=r"'%'"):
        build_store(store, 2)
    (tmp_path / "x%2Fy").mkdir()
    elsewhere = tmp_path / "x%2Fy" / "store"
    done = run(featstore("info", "--store", str(elsewhere)), expect=1)
    assert "Traceback" not in done.stderr and str(elsewhere) in done.stderr
    # A store made elsewhere, then moved under a '%' path: readers refuse it too.
    build_store(tmp_path / "plain", 2)
    shutil.move(tmp_path / "plain", elsewhere)
    for command in ("query", "info"):
        _refused(elsewhere, tmp_path, "'%'", "Hint:", command=command)


# The DeltaTable readers behind delta-rs issue 2184 (a process that used them may abort at
# exit with 134, now and then): featstore reads the log's file list with DuckDB or pyarrow.
ABORTING_READERS = ("to_pyarrow_table", "to_pyarrow_dataset")


def test_featstore_never_calls_the_readers_that_abort_at_exit() -> None:
    """The cause, checked everywhere: no call of those readers in featstore or its CLI."""
    root = Path(__file__).resolve().parents[2]
    calls = [
        f"{path.relative_to(root)}:{node.lineno} {node.func.attr}"
        for folder in ("featstore", "cli")
        for path in sorted((root / folder).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text("utf-8")))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ABORTING_READERS
    ]
    assert not calls, calls


@pytest.mark.slow
def test_read_commands_never_abort_at_exit(tmp_path: Path, small_store: Path) -> None:
    """delta-rs issue 2184: some processes that read a table abort at exit (134). The
    symptom, sampled (the cause is checked above): read commands run side by side."""
    commands = [
        featstore("query", "--store", str(small_store), "select count(*) from images"),
        featstore("info", "--store", str(small_store)),
    ] * 16

    def status(command: list[str]) -> tuple[int, str]:
        import subprocess

        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        return done.returncode, done.stderr[-300:]

    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(status, commands))
    failed = [(c, e) for c, e in codes if c != 0]
    assert not failed, f"{len(failed)} of {len(codes)} runs failed: {failed[:3]}"


def _read_everywhere(path: Path) -> pa.Table:
    """`path` read by pyarrow, DuckDB and (when installed) polars; pyarrow's table."""
    table = pq.read_table(path)
    with duckdb.connect() as con:
        count = con.execute("SELECT count(*) FROM read_parquet(?)", [str(path)]).fetchone()
        assert count is not None and count[0] == table.num_rows
        nulls = con.execute(
            "SELECT count(*) FILTER (features IS NULL) FROM read_parquet(?)", [str(path)]
        ).fetchone()
    try:
        import polars as pl
    except ImportError:
        pass
    else:
        frame = pl.read_parquet(path)
        assert frame.height == table.num_rows
        assert frame["features"].null_count() == table.column("features").null_count
    assert nulls is not None and nulls[0] == table.column("features").null_count
    return table


def test_query_parquet_output_with_null_features_reads_back(
    tmp_path: Path, extracted: Extracted
) -> None:
    out = tmp_path / "x.parquet"
    run(
        featstore(
            "query",
            "--store",
            str(extracted.store),
            "select * from images order by identity, role, image_path",
            "--format",
            "parquet",
            "--output",
            str(out),
        )
    )
    table = _read_everywhere(out)
    statuses = table.column("status").to_pylist()
    assert "no_face" in statuses and "ok" in statuses
    features = table.column("features").to_pylist()
    assert all((f is None) == (s != "ok") for f, s in zip(features, statuses, strict=True))
    expected = Store(extracted.store).sql(
        "select * from images order by identity, role, image_path"
    )
    assert table.column("features").to_pylist() == expected.column("features").to_pylist()
    assert table.column("landmarks_2d").to_pylist() == expected.column("landmarks_2d").to_pylist()


def test_every_data_file_of_the_table_reads_back_everywhere(extracted: Extracted) -> None:
    snap = Store(extracted.store).model(MODEL)
    assert snap.files
    total = nulls = 0
    for name in snap.files:
        table = _read_everywhere(Path(name))
        nulls += table.column("features").null_count
        total += table.num_rows
    assert nulls > 0  # the no_face and unreadable rows
    assert total == Store(extracted.store).sql("select count(*) n from images")["n"][0].as_py()


def test_a_store_of_only_a_manifest_reads_as_empty(tmp_path: Path) -> None:
    store = tmp_path / "empty"
    store.mkdir()
    (store / "_featstore.json").write_text(json.dumps({"format": "featstore-store", "version": 2}))
    done = run(featstore("query", "--store", str(store), "select count(*) from images"))
    assert "0" in done.stdout
