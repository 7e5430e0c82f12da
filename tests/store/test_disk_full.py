"""A disk that fills during `compact` or `export-json`: the store stays as it was, and the
message says what happened and what to do.

The full disk is a file size limit (RLIMIT_FSIZE, with SIGXFSZ ignored so a write fails
with EFBIG instead of killing the process): every file the command writes beyond the
limit fails as on a full disk, in Rust (delta-rs) and in Python alike.
"""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MODEL
from delta_checks import assert_same_rows, build_store, table_rows

from featstore.store import Store

LIMIT = 40_000  # bytes per file: the log's commits fit, the data files do not

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE semantics")


def _on_a_full_disk(*args: str) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return subprocess.run(
        [sys.executable, "-m", "featstore", *args],
        capture_output=True,
        text=True,
        preexec_fn=limit,
    )


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    build_store(path, 60, dim=64, per_commit=10)  # six files of ~30 KB
    return path


def test_compact_on_a_full_disk_leaves_the_table_as_it_was(store: Path) -> None:
    before, version = table_rows(store), Store(store).model(MODEL).version
    done = _on_a_full_disk("compact", "--store", str(store))
    assert done.returncode == 1, done.stderr
    assert "the disk holding the store is full" in done.stderr
    assert "Traceback" not in done.stderr
    assert "store is as it was" in done.stderr and "featstore vacuum" in done.stderr
    assert Store(store).model(MODEL).version == version
    assert_same_rows(table_rows(store), before)
    # Once there is room again: vacuum removes the failed write's files, compact works.
    Store(store).model(MODEL).vacuum(0, dry_run=False, no_writer_running=True)
    Store(store).model(MODEL).compact("compact")
    assert_same_rows(table_rows(store), before)


def test_export_on_a_full_disk_writes_nothing(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "valid.json"
    out.parent.mkdir()
    version = Store(store).model(MODEL).version
    done = _on_a_full_disk("export-json", "--store", str(store), "--out", str(out))
    assert done.returncode == 1, done.stderr
    assert f"cannot write --out {out}" in done.stderr and "Traceback" not in done.stderr
    assert "store is unchanged" in done.stderr
    assert list(out.parent.iterdir()) == []  # neither the file nor its temporary
    assert Store(store).model(MODEL).version == version
