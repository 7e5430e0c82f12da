"""The neighbors table under `featstore vacuum` / `compact`, and its errors through the
store's one translation (`store_errors`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ARCFACE, copy_store
from delta_checks import featstore, run

from featstore.errors import StoreError
from featstore.neighbors import find_neighbors
from featstore.store.maintenance import compact, vacuum
from featstore.store.neighbors import NeighborsTable
from featstore.store.store import Store

NO_WRITER = "--i-know-no-writer-is-running"


def _parquet(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.parquet")}


def test_vacuum_deletes_replaced_neighbors_results(neighbors_store: Path, tmp_path: Path) -> None:
    store = copy_store(neighbors_store, tmp_path / "store")
    find_neighbors(store, k=2)
    folder = store / f"neighbors={ARCFACE}"
    first = _parquet(folder)
    assert find_neighbors(store, k=3).committed  # overwrites: the k=2 files are replaced
    table = NeighborsTable(Store(store).location, ARCFACE)
    stored = table.read()
    assert stored is not None
    current = {Path(f).name for f in stored.files}
    assert first and first.isdisjoint(current) and _parquet(folder) == first | current
    rows = Store(store).sql("SELECT count(*) AS n FROM image_neighbors").column("n")[0]

    done = run(featstore("vacuum", "--store", str(store), "--retain", "0", NO_WRITER))
    assert f"neighbors {ARCFACE}: deleted {len(first)} files" in done.stdout, done.stdout
    assert _parquet(folder) == current
    after = Store(store).sql("SELECT count(*) AS n FROM image_neighbors").column("n")[0]
    assert after == rows
    # Nothing left to delete; the model's own table is listed too.
    again = vacuum(store, model=ARCFACE, retain_hours=0, no_writer_running=True)
    assert [(v.table, v.model, v.removed) for v in again] == [
        ("model", ARCFACE, []),
        ("neighbors", ARCFACE, []),
    ]


def test_compact_joins_a_neighbors_table_written_in_parts(
    neighbors_store: Path, tmp_path: Path
) -> None:
    store = copy_store(neighbors_store, tmp_path / "store")
    find_neighbors(store)
    table = NeighborsTable(Store(store).location, ARCFACE)
    rows = table.open().to_pyarrow_table()
    # A large result comes in several files: append the same rows as a second file.
    from deltalake import write_deltalake

    write_deltalake(table.uri, rows, mode="append")
    stored = table.read()
    assert stored is not None and len(stored.files) == 2
    (done,) = [c for c in compact(store) if c.table == "neighbors"]
    assert (done.model, done.files_before, done.files_after) == (ARCFACE, 2, 1)
    assert table.open().to_pyarrow_table().num_rows == 2 * rows.num_rows
    assert done.version == table.open().version()
    # One file: nothing to do, nothing committed.
    (again,) = [c for c in compact(store, model=ARCFACE) if c.table == "neighbors"]
    assert again.files_before == 1 and again.version == done.version


def test_a_damaged_neighbors_log_is_a_store_error(neighbors_store: Path, tmp_path: Path) -> None:
    store = copy_store(neighbors_store, tmp_path / "store")
    find_neighbors(store, k=2)
    log = store / f"neighbors={ARCFACE}" / "_delta_log"
    for entry in log.glob("*.json"):
        entry.write_text("{not json")
    with pytest.raises(StoreError) as raised:
        NeighborsTable(Store(store).location, ARCFACE).open()
    message = str(raised.value)
    # The store's one translation (delta_errors.store_errors), then the neighbors remedy.
    assert message.startswith("cannot read the Delta table") and f"neighbors={ARCFACE}" in message
    assert "_delta_log is damaged" in message and "`featstore neighbors` again" in message
