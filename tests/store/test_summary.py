"""Per data file summaries (`featstore.store.summary`): counts and resume planning read them
instead of the rows, and agree with the rows through every way a table changes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import MODEL
from delta_checks import build_store, synthetic_provenance, synthetic_rows

from featstore.errors import StoreError
from featstore.store import Store, summary_totals
from featstore.store.query import StoreCounts, count_rows
from featstore.store.summary import SUMMARY_DIR
from featstore.store.writer import TableWriter

DIM = 8


def _from_rows(store: Path, version: int | None = None) -> tuple[dict[str, str], StoreCounts]:
    """Fingerprints and counts computed from every row: what the summaries must match."""
    rows = Store(store).sql(
        "SELECT identity, role, status, input_fingerprint FROM images", model=MODEL, version=version
    )
    fingerprints: dict[str, str] = {}
    by_role: dict[str, Counter[str]] = {"face": Counter(), "frame": Counter()}
    face_ok: set[str] = set()
    frames_ok: set[str] = set()
    for r in rows.to_pylist():
        fingerprints[r["identity"]] = r["input_fingerprint"]
        by_role[r["role"]][r["status"]] += 1
        if r["status"] == "ok":
            (face_ok if r["role"] == "face" else frames_ok).add(r["identity"])
    counts = StoreCounts(
        len(fingerprints),
        len(face_ok & frames_ok),
        dict(sorted(by_role["face"].items())),
        dict(sorted(by_role["frame"].items())),
    )
    return fingerprints, counts


def _check(store: Path, version: int | None = None) -> None:
    snap = Store(store).model(MODEL, version)
    fingerprints, counts = _from_rows(store, version)
    assert snap.fingerprints() == fingerprints
    assert count_rows(Store(store), model=MODEL, version=version)[MODEL] == counts


def _summaries(store: Path) -> set[str]:
    folder = store / f"model={MODEL}" / SUMMARY_DIR
    return {p.name.removesuffix(".parquet") for p in folder.glob("*.parquet")}


def _rewrite(store: Path, names: list[str], frames: int, fingerprint: str) -> None:
    """Commit `names` again (an overwrite by predicate, as a re-extraction does)."""
    table = Store(store).table(MODEL)
    writer = TableWriter(table, synthetic_provenance(DIM), command="test", max_identities=10)
    for i, name in enumerate(names):
        writer.add(name, synthetic_rows(name, frames, DIM, seed=100 + i), fingerprint=fingerprint)
    writer.flush()


def test_summaries_agree_with_the_rows_through_overwrite_compaction_and_time_travel(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    build_store(store, 12, dim=DIM, per_commit=5)  # three commits, three files
    first = Store(store).model(MODEL).version
    _check(store)
    assert _summaries(store) == {Path(f).name for f in Store(store).model(MODEL).files}

    _rewrite(store, ["id_00003", "id_00007", "new_one"], frames=2, fingerprint="fp-again")
    _check(store)
    _check(store, first)  # time travel: the old files' summaries still answer

    before = set(Store(store).model(MODEL).files)
    Store(store).model(MODEL).compact("compact")
    after = {Path(f).name for f in Store(store).model(MODEL).files}
    assert after <= _summaries(store)  # compaction summarises what it wrote
    _check(store)

    removed = Store(store).model(MODEL).vacuum(0, dry_run=False, no_writer_running=True)
    assert removed and {Path(f).name for f in before} <= {Path(r).name for r in removed}
    assert _summaries(store) == after  # the deleted files' summaries went with them
    _check(store)


def test_a_summary_that_is_not_its_files_is_made_again(tmp_path: Path) -> None:
    store = tmp_path / "store"
    build_store(store, 6, dim=DIM, per_commit=3)
    _check(store)
    folder = store / f"model={MODEL}" / SUMMARY_DIR
    first, second = sorted(folder.glob("*.parquet"))
    second.write_bytes(first.read_bytes())  # another file's summary (other row counts)
    first.write_bytes(b"not parquet")
    _check(store)


def test_a_missing_data_file_is_named(tmp_path: Path) -> None:
    store = tmp_path / "store"
    build_store(store, 4, dim=DIM, per_commit=2)
    _check(store)
    victim = Path(Store(store).model(MODEL).files[0])
    victim.unlink()
    with pytest.raises(StoreError, match=f"is damaged: data file .*{victim.name} is missing"):
        count_rows(Store(store))


def test_counts_read_only_the_footers_when_the_files_follow_each_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    build_store(store, 12, dim=DIM, per_commit=5)  # id_00000-04, 05-09, 10-11
    _check(store)  # makes the summaries

    def no_rows(*args: object) -> None:
        raise AssertionError("the summaries' rows were read")

    monkeypatch.setattr(summary_totals, "read_summary", no_rows)
    assert count_rows(Store(store))[MODEL] == _from_rows(store)[1]


def test_a_summary_without_totals_in_its_footer_gets_them(tmp_path: Path) -> None:
    """Summaries written before the footers had totals are read whole once, then upgraded."""
    store = tmp_path / "store"
    build_store(store, 6, dim=DIM, per_commit=3)
    _check(store)
    for path in (store / f"model={MODEL}" / SUMMARY_DIR).glob("*.parquet"):
        table = pq.read_table(path)
        meta = dict(table.schema.metadata)
        del meta[b"featstore.identities"]
        pq.write_table(table.replace_schema_metadata(meta), path)
    _check(store)
    for path in (store / f"model={MODEL}" / SUMMARY_DIR).glob("*.parquet"):
        assert b"featstore.identities" in pq.read_schema(path).metadata


def _part(count: int, valid: int, first: tuple, last: tuple) -> summary_totals._FileTotals:
    return summary_totals._FileTotals(
        count, valid, summary_totals._Edge(*first), summary_totals._Edge(*last), {"face": {"ok": 1}}
    )


def test_an_identity_split_across_files_is_counted_once_and_valid_when_joined() -> None:
    # "b" has its frontal row in the first file and its frames in the next two: valid
    # only when the three files are added up; "a" and "c" are valid in their own files.
    parts = [
        _part(3, 2, ("c", 1, 2), ("d", 1, 0)),  # out of order on purpose
        _part(2, 1, ("a", 1, 1), ("b", 1, 0)),
        _part(1, 0, ("b", 0, 2), ("b", 0, 2)),
        _part(2, 0, ("b", 0, 1), ("c", 0, 0)),
    ]
    totals = summary_totals._add_up(parts)
    assert totals is not None
    # a, b, c, d and the one between c and d: "b" spans three files, "c" two
    assert totals.identities == 5
    assert totals.valid == 4  # all but "d"; "b" only once its files are joined
    assert totals.counts == {"face": {"ok": 4}}


def test_overlapping_files_are_not_added_up() -> None:
    parts = [_part(3, 0, ("a", 0, 0), ("m", 0, 0)), _part(2, 0, ("c", 0, 0), ("z", 0, 0))]
    assert summary_totals._add_up(parts) is None


def test_valid_identities_are_the_rows_valid_ones_in_pythons_order(tmp_path: Path) -> None:
    store = tmp_path / "store"
    build_store(store, 7, dim=DIM, per_commit=3)
    # Names out of ASCII (code point order is not locale order), overlapping the others.
    _rewrite(store, ["张伟", "Émile", "emile", "id_00002", "Zoë", "zoe"], frames=2, fingerprint="x")
    rows = (
        Store(store)
        .sql("SELECT identity FROM identities WHERE valid", model=MODEL)
        .column("identity")
    )
    got = Store(store).model(MODEL).valid_identities().to_pylist()
    assert got == sorted(rows.to_pylist()) and len(got) == 12


def test_footers_and_fingerprints_where_a_store_splits_identities_or_overlaps_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deltalake import write_deltalake

    store = tmp_path / "store"
    build_store(store, 4, frames=4, dim=DIM, per_commit=4)  # one file, 5 rows per identity
    snap = Store(store).model(MODEL)
    rows = pq.read_table(snap.files[0]).sort_by([("identity", "ascending"), ("role", "ascending")])
    snap.delete_rows("test")

    def append(part: object) -> None:  # a file of exactly these rows (a writer's commit)
        write_deltalake(Store(store).model(MODEL).delta, part, mode="append")

    # id_00001's frontal image in one file and its frames in the next (valid only added
    # up); id_00002 across three files, one of which holds nothing else.
    for start, end in ((0, 6), (6, 12), (12, 13), (13, 20)):
        append(rows.slice(start, end - start))
    touching = Store(store).model(MODEL).version
    _check(store)

    def rows_read(*args: object, **kwargs: object) -> None:
        raise AssertionError("the footers should have been enough")

    with monkeypatch.context() as patch:
        patch.setattr(summary_totals, "read_summary", rows_read)
        assert count_rows(Store(store))[MODEL].valid_identities == 4

    # A file whose range overlaps the others (id_00000's rows again): counted from the rows.
    append(rows.slice(0, 3))
    _check(store)
    _check(store, touching)
