"""Messages that send users the right way: a vacuumed version is called vacuumed (with the
versions that read), a missing file of the latest version is damage named as such, a full
disk during a write says the store is intact, a read-only store says read-only."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from delta_checks import MODEL, build_store, featstore, run
from featstore_cli.main import main
from s3_server import S3

from featstore.errors import StoreError
from featstore.store import Store
from featstore.store.maintenance import compact, vacuum


def _age(folder: Path) -> None:
    """Date the data files an hour back (older than the newest commit)."""
    for path in folder.glob("*.parquet"):
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - 3600 * 10**9))


def test_a_vacuumed_version_is_called_vacuumed_with_the_readable_ones(tmp_path: Path) -> None:
    store = tmp_path / "store"
    build_store(store, 3, per_commit=1)  # versions 1-3, then the compaction: 4
    compact(store)
    _age(store / f"model={MODEL}")
    vacuum(store, retain_hours=0, no_writer_running=True)
    with pytest.raises(StoreError) as caught:
        Store(store).connect(version=2)
    message = str(caught.value)
    assert "version 2 of" in message and "`featstore vacuum` deleted them" in message
    assert "versions 1-3 were vacuumed" in message and "readable: 0, 4" in message, message
    assert "damaged" not in message and "truncated" not in message
    assert Store(store).sql("SELECT count(*) AS n FROM images")["n"][0].as_py() == 15


def _vacuumed(store: Path) -> None:
    """Versions 0-6 (6 commits of one identity), the compaction 7, then a vacuum: 1-6 go."""
    build_store(store, 6, per_commit=1)
    compact(store)
    _age(store / f"model={MODEL}")
    vacuum(store, retain_hours=0, no_writer_running=True)


# Every command that takes --version, with the arguments it needs besides.
_VERSIONED = {
    "query": ["query", "SELECT count(*) FROM images"],
    "info": ["info"],
    "export-json": ["export-json", "--out", "{out}/x.json"],
    "report": ["report", "--out", "{out}/x.html"],
}


@pytest.mark.parametrize("command", sorted(_VERSIONED))
def test_every_versioned_command_names_the_versions_that_exist_and_read(
    command: str, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    _vacuumed(store)
    args = [a.format(out=tmp_path) for a in _VERSIONED[command]]
    for version, said in (
        ("9", f"has no version 9: model {MODEL} has versions 0-7; versions 1-6 were vacuumed"),
        ("2", "version 2 of"),
    ):
        done = CliRunner().invoke(main, [*args, "--store", str(store), "--version", version])
        assert done.exit_code == 1, done.output
        assert said in done.output, done.output
        assert "(their data files are gone); readable: 0, 7." in done.output, done.output
        assert "Kernel error" not in done.output and "damaged" not in done.output
        assert "LogSegment" not in done.output


def test_the_library_names_the_versions_that_exist_and_read(tmp_path: Path) -> None:
    from featstore import FeatureDataset

    store = tmp_path / "store"
    build_store(store, 6, per_commit=1)
    with pytest.raises(StoreError, match=f"has no version 9: model {MODEL} has versions 0-6; "
                       "readable: 0-6.\nHint: read one of the readable"):  # fmt: skip
        Store(store).model(MODEL, 9)
    with pytest.raises(StoreError, match="has no version 9"):
        FeatureDataset(store, version=9, cache_dir=tmp_path / "cache")
    assert Store(store).model(MODEL, 6).version == 6
    compact(store)
    _age(store / f"model={MODEL}")
    vacuum(store, retain_hours=0, no_writer_running=True)
    with pytest.raises(StoreError) as caught:
        Store(store).model(MODEL, 3)
    message = str(caught.value)
    assert "version 3 of" in message and "`featstore vacuum` deleted them" in message
    assert "versions 1-6 were vacuumed (their data files are gone); readable: 0, 7" in message
    with pytest.raises(StoreError, match="versions 1-6 were vacuumed"):
        FeatureDataset(store, version=3, cache_dir=tmp_path / "cache")
    assert Store(store).model(MODEL, 7).version == 7


def test_versions_are_named_on_object_storage_too(s3: S3) -> None:
    uri = s3.uri("stores/versions")
    build_store(uri, 3, per_commit=1)
    with pytest.raises(StoreError, match=f"has no version 9: model {MODEL} has versions 0-3; "
                       "readable: 0-3"):  # fmt: skip
        Store(uri).model(MODEL, 9)
    assert Store(uri).model(MODEL, 2).version == 2


def test_a_missing_file_of_the_latest_version_is_named_not_a_permission_error(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    build_store(store, 3, per_commit=1)
    second = Store(store).model(MODEL).files[1]
    os.unlink(second)
    done = run(featstore("query", "--store", str(store), "SELECT count(*) FROM images"), expect=1)
    assert "Permission Error" not in done.stderr and "Views and" not in done.stderr
    assert f"1 of its 3 data files are gone ({Path(second).name})" in done.stderr, done.stderr
    assert "deleted outside featstore" in done.stderr
    assert "the latest, 3, has lost data files; readable: 0-1" in done.stderr, done.stderr


def _mount(*args: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 120 KiB tmpfs (root only; skipped where mounting is not allowed)."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=120k", "tmpfs", str(folder)):
        pytest.skip("needs root and mount to make a small disk")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_a_full_disk_during_a_write_says_so_and_that_the_store_is_intact(
    tiny_disk: Path,
) -> None:
    store = tiny_disk / "store"
    with pytest.raises(StoreError) as caught:
        build_store(store, 40, per_commit=1, dim=64)  # commits until the disk fills
    message = str(caught.value)
    assert "the disk holding the store is full" in message, message
    assert "the store is as it was before it" in message
    assert "_delta_log is damaged" not in message
    committed = Store(store).model(MODEL)
    assert committed.version >= 1 and committed.row_count() > 0  # what was committed reads


def test_vacuum_on_a_read_only_store_says_read_only(tmp_path: Path) -> None:
    store, mounted = tmp_path / "store", tmp_path / "ro"
    build_store(store, 2, per_commit=1)
    folder = store / f"model={MODEL}"
    shutil.copy(next(folder.glob("*.parquet")), folder / "part-00000-orphan-c000.zstd.parquet")
    _age(folder)
    mounted.mkdir()
    if not _mount("--bind", "-o", "ro", str(store), str(mounted)):
        pytest.skip("needs root and mount for a read-only store")
    try:
        done = run(
            featstore(
                "vacuum", "--store", str(mounted), "--retain", "0", "--i-know-no-writer-is-running"
            ),
            expect=1,
        )
    finally:
        subprocess.run(["umount", str(mounted)], check=False)
    assert "the store is read-only here" in done.stderr, done.stderr
    assert "Generic LocalFileSystem error" not in done.stderr
