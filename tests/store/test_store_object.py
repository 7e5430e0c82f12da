"""The store as one object: one door, one snapshot type, one translation of errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import MODEL, Extracted, copy_store

import featstore
from featstore.errors import StoreError
from featstore.store import ModelSnapshot, Store
from featstore.store.delta_errors import store_errors
from featstore.store.location import resolve_store


def test_one_door_under_every_public_name() -> None:
    import featstore.query
    import featstore.store.store

    assert featstore.Store is featstore.store.Store is featstore.store.store.Store
    assert featstore.query.Store is featstore.Store
    for name in ("Store", "export_json", "import_json", "validate_json", "QueryError"):
        assert name in featstore.__all__
        assert getattr(featstore, name) is not None


def test_a_store_passed_through_the_door_is_the_same_store(extracted: Extracted) -> None:
    store = Store(extracted.store)
    again = Store(store)
    assert again.location == store.location
    assert featstore.Store(again).model_names() == store.model_names()


def test_a_snapshot_owns_one_version(extracted: Extracted, tmp_path: Path) -> None:
    path = copy_store(extracted.store, tmp_path / "store")
    store = Store(path)
    snap = store.model(MODEL)
    assert isinstance(snap, ModelSnapshot)
    first = snap.version
    assert snap.dim == snap.info.dim == snap.provenance["feature_dim"]
    assert snap.signature == f"{snap.table_id}@{first}"
    rows = snap.row_count()
    assert rows > 0
    with snap.connect() as con:
        assert con.execute("SELECT count(*) FROM images").fetchall()[0][0] == rows
    assert snap.fingerprints()  # the planning's view of it
    # A write moves this snapshot to the version it made; an older one stays readable.
    counts = snap.compact("test")
    assert snap.version == (first + 1 if counts["files_before"] > 1 else first)
    old = store.model(MODEL, version=first)
    assert old.version == first and old.row_count() == rows
    assert [v.version for v in snap.history()][0] == snap.version


def test_each_precondition_has_one_message(tmp_path: Path, extracted: Extracted) -> None:
    empty = Store(tmp_path / "empty", create=True)
    with pytest.raises(StoreError, match="is empty: it holds no model yet"):
        empty.require_models()
    snap = Store(extracted.store).model(MODEL)
    snap.require_rows()
    snap.require_pose()  # this featstore writes the pose


def test_run_query_is_a_deprecated_name_of_sql(extracted: Extracted) -> None:
    from featstore.query import run_query

    store = Store(extracted.store)
    with pytest.warns(DeprecationWarning, match="Store.sql"):
        table = run_query(store, "SELECT count(*) AS n FROM images")
    assert table.equals(store.sql("SELECT count(*) AS n FROM images"))


class _Panic(BaseException):
    """Stands where pyo3's PanicException stands: a BaseException, not an Exception."""


def _translated(exc: BaseException, version: int | None = None) -> BaseException:
    """What leaves `store_errors` when `exc` is raised inside it."""
    try:
        with store_errors("t", resolve_store(Path("/nonexistent-store")), version=version):
            raise exc
    except BaseException as out:  # noqa: BLE001 - what came out is the result
        return out
    raise AssertionError("store_errors swallowed the exception")


def test_storage_errors_are_translated_by_class() -> None:
    from deltalake.exceptions import CommitFailedError, DeltaError

    out = _translated(DeltaError("broken log\nsecond line"))
    assert isinstance(out, StoreError)
    assert str(out).startswith("cannot read the Delta table t: broken log\nHint:")
    out = _translated(_Panic("thread panicked"))
    assert str(out).startswith("cannot read the Delta table t: thread panicked")
    out = _translated(DeltaError("Invalid table version: 9"), version=9)
    assert str(out).startswith("t has no version 9: Invalid table version: 9\nHint: `featstore")
    out = _translated(CommitFailedError("lost the race"))
    assert str(out) == "t: lost the race"
    assert isinstance(out.__cause__, CommitFailedError)  # callers may retry on it
    interrupt = KeyboardInterrupt()
    assert _translated(interrupt) is interrupt  # Ctrl-C is never a storage error
    own = StoreError("already featstore's")
    assert _translated(own) is own
