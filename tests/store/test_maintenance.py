"""compact, vacuum and the compaction `extract` does by itself: content unchanged, fewer
files sorted by identity, nothing committed by a rerun on unchanged input, orphans of a
killed run removed; kill -9 during compact, then compact again."""

from __future__ import annotations

import os
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

from featstore.errors import InputError
from featstore.extraction import planning
from featstore.store import Store
from featstore.store.maintenance import compact, history, vacuum

NO_WRITER = "--i-know-no-writer-is-running"


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

    _age(orphan)  # a killed run's leftover: older than the commits that came after it

    assert vacuum(store)[0].removed == []  # the default keeps a week of files
    listed = vacuum(store, retain_hours=0, dry_run=True, no_writer_running=True)[0]
    assert [Path(p).name for p in listed.removed] == [orphan.name] and orphan.exists()
    done = run(featstore("vacuum", "--store", str(store), "--retain", "0", NO_WRITER))
    assert "deleted 1 files" in done.stdout, done.stdout
    assert not orphan.exists()
    assert data_files(store) == kept == committed_files(store)
    assert_same_rows(table_rows(store), rows)


def test_vacuum_below_the_safe_retention_needs_the_no_writer_flag(tmp_path: Path) -> None:
    """A short retention deletes the files of a commit in flight: refused unless the user
    says that no writer is running (as Delta Lake's retention check)."""
    store = tmp_path / "store"
    build_store(store, 4, per_commit=2)
    folder = store / f"model={MODEL}"
    orphan = _age(_orphan(folder))
    refused = run(featstore("vacuum", "--store", str(store), "--retain", "0"), expect=1)
    assert NO_WRITER in refused.stderr and "168" in refused.stderr, refused.stderr
    assert orphan.exists()
    with pytest.raises(InputError, match="no_writer_running"):
        vacuum(store, retain_hours=1)
    assert orphan.exists()
    assert vacuum(store, retain_hours=168)[0].removed == []  # the safe default needs no flag


def test_vacuum_never_deletes_files_newer_than_the_newest_commit(tmp_path: Path) -> None:
    """The files of a commit in flight (written after the newest commit) stay, whatever the
    retention and the flag: the writer's commit will point at them."""
    store = tmp_path / "store"
    build_store(store, 4, per_commit=2)
    rows = table_rows(store)
    folder = store / f"model={MODEL}"
    in_flight = _orphan(folder, "in-flight")
    leftover = _age(_orphan(folder, "leftover"))
    done = vacuum(store, retain_hours=0, no_writer_running=True)[0]
    assert [Path(p).name for p in done.removed] == [leftover.name]
    assert in_flight.exists() and not leftover.exists()
    assert_same_rows(table_rows(store), rows)


def _orphan(folder: Path, tag: str = "0123abcd") -> Path:
    """A data file no version lists (what a writer leaves before its commit)."""
    name = f"part-00000-{tag}-dead-beef-0000-000000000000-c000.zstd.parquet"
    shutil.copy(folder / sorted(p.name for p in folder.glob("*.parquet"))[0], folder / name)
    return folder / name


def _age(*paths: Path) -> Path:
    """Date `paths` an hour back: written before the table's newest commit."""
    for path in paths:
        stat = Path(path).stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - 3600 * 10**9))
    return Path(paths[0]) if paths else Path()


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
    folder = store / f"model={MODEL}"
    _age(*(folder / name for name in data_files(store) - committed_files(store)))
    run(featstore("vacuum", "--store", str(store), "--retain", "0", NO_WRITER))
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
