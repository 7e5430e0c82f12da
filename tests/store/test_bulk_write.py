"""A model's rows replaced whole by pyarrow-written files and one delta-rs commit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from featstore.store import Store, bulk_write
from featstore.store.bulk_write import replace_rows
from featstore.store.properties import ROW_GROUP_ROWS

SCHEMA = pa.schema(
    [("identity", pa.string()), ("frame_index", pa.int32()), ("features", pa.list_(pa.float32()))]
)


def batches(identities: int, rows_each: int, start: int = 0) -> Iterator[pa.RecordBatch]:
    """One batch per identity, as import-json hands them over."""
    for i in range(start, start + identities):
        yield pa.record_batch(
            {
                "identity": [f"p{i:05d}"] * rows_each,
                "frame_index": list(range(rows_each)),
                "features": [[float(i), float(j)] for j in range(rows_each)],
            },
            schema=SCHEMA,
        )


def new_table(tmp_path: Path, provenance: dict[str, object]) -> tuple[Store, object]:
    store = Store(tmp_path / "store", create=True)
    table = store.table("m")
    table.claim(provenance, SCHEMA, overwrite=False)
    return store, table


def rows_of(table: object) -> pa.Table:
    delta: DeltaTable = table.open().delta  # type: ignore[attr-defined]
    return pa.concat_tables(pq.read_table(uri) for uri in delta.file_uris())


def test_rows_replaced_in_one_commit_in_row_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk_write, "ROWS_PER_FILE", 2 * ROW_GROUP_ROWS)  # several files
    _, table = new_table(tmp_path, {"model": "m", "source": "test"})
    replace_rows(table, SCHEMA, batches(10, 7), "first")
    before = table.open().version  # type: ignore[attr-defined]
    replace_rows(table, SCHEMA, batches(1500, 7, start=100), "second")
    delta: DeltaTable = table.open().delta  # type: ignore[attr-defined]
    assert delta.version() == before + 1  # one commit
    assert json.loads(delta.metadata().description) == {"model": "m", "source": "test"}
    rows = rows_of(table)
    assert rows.num_rows == 1500 * 7  # the first rows are gone
    assert sorted(set(rows.column("identity").to_pylist())) == [
        f"p{i:05d}" for i in range(100, 1600)
    ]
    files = [pq.ParquetFile(uri).metadata for uri in delta.file_uris()]
    assert len(files) == 2  # 10,500 rows, at most 8,192 a file
    groups = [f.row_group(i).num_rows for f in files for i in range(f.num_row_groups)]
    assert groups[:-1] == [ROW_GROUP_ROWS] * (len(groups) - 1)  # not one group per batch
    actions = pa.table(delta.get_add_actions(flatten=True)).to_pydict()
    assert sum(actions["num_records"]) == 1500 * 7
    assert min(actions["min.identity"]) == "p00100"
    assert max(actions["max.identity"]) == "p01599"


def test_a_failure_leaves_the_table_and_its_folder_as_they_were(tmp_path: Path) -> None:
    _, table = new_table(tmp_path, {"model": "m"})
    replace_rows(table, SCHEMA, batches(3, 5), "first")
    folder = tmp_path / "store" / "model=m"
    files_before = sorted(p.name for p in folder.glob("*.parquet"))
    version = table.open().version  # type: ignore[attr-defined]

    def failing() -> Iterator[pa.RecordBatch]:
        yield from batches(2000, 5)  # enough for files to be written
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        replace_rows(table, SCHEMA, failing(), "second")
    assert table.open().version == version  # type: ignore[attr-defined]
    assert sorted(p.name for p in folder.glob("*.parquet")) == files_before
    assert rows_of(table).num_rows == 15


def test_an_error_after_the_commit_keeps_the_committed_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # delta-rs raises from its post-commit hooks (a checkpoint it could not write) after
    # the version is in the log: its files are the table's now and must not be deleted.
    _, table = new_table(tmp_path, {"model": "m"})
    real = DeltaTable.create_write_transaction

    def commit_then_fail(self: DeltaTable, *args: object, **kwargs: object) -> None:
        real(self, *args, **kwargs)  # type: ignore[arg-type]
        raise OSError("checkpoint: Is a directory (os error 21)")

    monkeypatch.setattr(DeltaTable, "create_write_transaction", commit_then_fail)
    with pytest.raises(OSError, match="checkpoint"):
        replace_rows(table, SCHEMA, batches(4, 3), "import-json")
    assert rows_of(table).num_rows == 12  # readable: the files are all there


def test_history_counts_the_rows_a_bulk_replace_added_and_removed(tmp_path: Path) -> None:
    """import-json's commits showed '-' for both counts (no operation metrics)."""
    _, table = new_table(tmp_path, {"model": "m", "source": "test"})
    replace_rows(table, SCHEMA, batches(3, 5), "import-json")
    replace_rows(table, SCHEMA, batches(2, 4), "import-json")
    newest, first = table.open().history()[:2]  # type: ignore[attr-defined]
    assert (first.command, first.rows_added, first.rows_removed) == ("import-json", 15, 0)
    assert (newest.rows_added, newest.rows_removed) == (8, 15)
