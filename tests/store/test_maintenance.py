"""compact, vacuum and the compaction `extract` does by itself: content unchanged, fewer
files sorted by identity, nothing committed by a rerun on unchanged input, orphans of a
killed run removed; kill -9 during compact, then compact again."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import MODEL, Dataset, Models, fast_runtime, run_extract
from delta_checks import (
    assert_same_rows,
    build_store,
    committed_files,
    data_files,
    featstore,
    kill_when,
    log_versions,
    run,
    table_rows,
)

from featstore.extraction import planning
from featstore.store import Store
from featstore.store.maintenance import compact, history, vacuum


def _assert_sorted_by_identity(store: Path) -> None:
    """Each data file sorted by identity, and files cover disjoint identity ranges."""
    ranges = []
    for name in Store(store).model(MODEL).files:
        identities = pq.read_table(name, columns=["identity"]).column("identity").to_pylist()
        assert identities == sorted(identities), name
        ranges.append((identities[0], identities[-1]))
    ranges.sort()
    for (_, high), (low, _) in zip(ranges, ranges[1:], strict=False):
        assert high < low, ranges


def test_compact_keeps_the_rows_in_fewer_files_sorted_by_identity(tmp_path: Path) -> None:
    store = tmp_path / "store"
    build_store(store, 30, per_commit=1)
    # Commit order is not identity order: 3 identities that sort first, committed last.
    build_store(store, 3, per_commit=1, prefix="a")
    before = table_rows(store)
    version = max(log_versions(store))
    files = len(committed_files(store))
    assert files == 33
    done = run(featstore("compact", "--store", str(store)))
    assert f"{files} files -> 1" in done.stdout, done.stdout
    assert len(committed_files(store)) == 1
    assert_same_rows(table_rows(store), before)
    _assert_sorted_by_identity(store)
    # The version before the compaction still reads the same (time travel).
    assert_same_rows(table_rows(store, version=version), before)
    # Compacting a compacted table commits nothing.
    assert compact(store)[0].files_before == 1
    assert max(log_versions(store)) == version + 1
    assert history(store)[MODEL][0].command == "compact"


def test_vacuum_removes_orphans_only_past_the_retention(tmp_path: Path) -> None:
    store = tmp_path / "store"
    build_store(store, 6, per_commit=2)
    rows = table_rows(store)
    folder = store / f"model={MODEL}"
    kept = committed_files(store)
    # What a writer killed before its commit leaves: a data file no version lists.
    orphan = folder / "part-00000-0123abcd-dead-beef-0000-000000000000-c000.zstd.parquet"
    shutil.copy(folder / sorted(kept)[0], orphan)
    assert_same_rows(table_rows(store), rows)  # readers never see it

    assert vacuum(store)[0].removed == []  # the default keeps a week of files
    listed = vacuum(store, retain_hours=0, dry_run=True)[0]
    assert [Path(p).name for p in listed.removed] == [orphan.name] and orphan.exists()
    done = run(featstore("vacuum", "--store", str(store), "--retain", "0"))
    assert "deleted 1 files" in done.stdout, done.stdout
    assert not orphan.exists()
    assert data_files(store) == kept == committed_files(store)
    assert_same_rows(table_rows(store), rows)


def test_extract_compacts_a_fragmented_table_and_a_rerun_commits_nothing(
    tmp_path: Path, mini_dataset: Dataset, models: Models, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    monkeypatch.setattr(planning, "COMPACT_AT_FILES", 2)
    run_extract(mini_dataset, store, models, runtime=fast_runtime(commit_identities=1))
    commands = [v.command for v in history(store)[MODEL]]
    assert commands[0] == "extract (compaction)", commands  # 2 commits, then the compaction
    assert len(committed_files(store)) == 1
    _assert_sorted_by_identity(store)
    rows = table_rows(store)

    monkeypatch.setattr(planning, "COMPACT_AT_FILES", 1)  # one file would compact again
    versions = log_versions(store)
    summary = run_extract(mini_dataset, store, models)
    assert summary.identities_extracted == 0
    assert log_versions(store) == versions  # no commit, no compaction
    assert_same_rows(table_rows(store), rows)


@pytest.mark.slow
def test_compact_killed_then_rerun_keeps_the_rows(tmp_path: Path) -> None:
    store = tmp_path / "store"
    build_store(store, 80, dim=384, per_commit=1)
    rows = table_rows(store)
    before = data_files(store)
    command = featstore("compact", "--store", str(store))
    kill_when(command, lambda: bool(data_files(store) - before))
    assert_same_rows(table_rows(store), rows)
    run(command)
    assert len(committed_files(store)) == 1
    assert_same_rows(table_rows(store), rows)
    _assert_sorted_by_identity(store)
    run(featstore("vacuum", "--store", str(store), "--retain", "0"))
    assert data_files(store) == committed_files(store)
    assert_same_rows(table_rows(store), rows)


def test_compacted_files_are_sorted_by_identity_role_and_frame(tmp_path: Path) -> None:
    store = tmp_path / "store"
    build_store(store, 20, frames=6, per_commit=1)
    compact(store)
    for name in Store(store).model(MODEL).files:
        rows = pq.read_table(name, columns=["identity", "role", "frame_index"]).to_pylist()
        keys = [(r["identity"], r["role"], r["frame_index"] or 0) for r in rows]
        assert keys == sorted(keys)
