"""kill -9 at several moments of `extract` and `import-json`, then the same command again:
the table ends with exactly the rows of an uninterrupted run, nothing lost, no duplicate,
and readers never see part of an identity or of an import."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from conftest import MODEL, Dataset, Models, run_extract
from delta_checks import (
    assert_no_duplicates,
    assert_same_rows,
    build_store,
    committed_files,
    data_files,
    featstore,
    identities_whole,
    kill_when,
    log_versions,
    run,
    table_rows,
)
from store_checks import extract_args

from featstore.store import Store
from featstore.synthetic.images import generate_face_tree

pytestmark = pytest.mark.slow

IDENTITIES = 5


@pytest.fixture(scope="module")
def kill_dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """5 identities x 2 frames, the second frame without a face (null features)."""
    root = tmp_path_factory.mktemp("kill_data")
    face_dir, video_dir = generate_face_tree(
        root, identities=IDENTITIES, frames_per_identity=2, no_face_every=2, seed=11
    )
    return Dataset(root, face_dir, video_dir)


def _up_to_date(output: str) -> int:
    found = re.search(r"(\d+) identities already up to date", output)
    assert found, output
    return int(found.group(1))


def test_extract_killed_at_several_moments_resumes_to_an_uninterrupted_run(
    tmp_path: Path, kill_dataset: Dataset, models: Models
) -> None:
    reference = tmp_path / "reference"
    run_extract(kill_dataset, reference, models)
    expected = table_rows(reference)
    assert expected.num_rows == IDENTITIES * 3

    store = tmp_path / "store"
    command = featstore(*extract_args(kill_dataset, store, models), commit_every=1)

    # 1. the table is created, no identity committed yet
    kill_when(command, lambda: 0 in log_versions(store))
    assert table_rows(store).num_rows == 0

    # 2. two identities committed (one commit each), the run still going
    kill_when(command, lambda: len(log_versions(store)) >= 3)
    rows = table_rows(store)
    committed = identities_whole(rows, expected)
    assert 2 <= len(committed) < IDENTITIES
    assert_no_duplicates(rows)

    # 3. a data file written, its commit not yet made (or just made)
    before = data_files(store)
    kill_when(command, lambda: bool(data_files(store) - before))
    rows = table_rows(store)
    done_before_rerun = identities_whole(rows, expected)
    assert committed <= done_before_rerun

    # the same command again: redoes exactly what is not committed
    output = run(command).stdout
    assert _up_to_date(output) == len(done_before_rerun)
    final = table_rows(store)
    assert_same_rows(final, expected)

    # A rerun on unchanged input commits nothing.
    versions = log_versions(store)
    assert _up_to_date(run(command).stdout) == IDENTITIES
    assert log_versions(store) == versions

    # vacuum --retain 0 removes what the killed runs wrote but never committed.
    orphans = data_files(store) - committed_files(store)
    # Files newer than the newest commit may still be committed: vacuum leaves them, so
    # the leftovers are dated before it, as the killed runs' files of a busy store are.
    for name in orphans:
        path = store / f"model={MODEL}" / name
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns - 3600 * 10**9))
    done = run(
        featstore("vacuum", "--store", str(store), "--retain", "0", "--i-know-no-writer-is-running")
    )
    assert f"deleted {len(orphans)}" in done.stdout or orphans == set(), done.stdout
    assert data_files(store) == committed_files(store)
    assert_same_rows(table_rows(store), expected)


@pytest.fixture(scope="module")
def trainer_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new-format JSON of 300 synthetic identities x 4 frames x 384 dims (~6 MB)."""
    root = tmp_path_factory.mktemp("kill_json")
    build_store(root / "store", 300, frames=4, dim=384, per_commit=300)
    out = root / "valid_images.json"
    run(featstore("export-json", "--store", str(root / "store"), "--out", str(out)))
    return out


@pytest.mark.parametrize("moment", ["created", "writing"])
def test_import_json_killed_then_rerun_equals_an_uninterrupted_import(
    tmp_path: Path, trainer_json: Path, moment: str
) -> None:
    reference = tmp_path / "reference"
    run(featstore("import-json", str(trainer_json), "--store", str(reference)))
    expected = table_rows(reference)

    store = tmp_path / "store"
    command = featstore("import-json", str(trainer_json), "--store", str(store))
    if moment == "created":
        kill_when(command, lambda: 0 in log_versions(store))
    else:
        kill_when(command, lambda: bool(data_files(store)))
    # all or nothing: nothing of the import is visible
    if (store / f"model={MODEL}" / "_delta_log").exists():
        assert table_rows(store).num_rows in (0, expected.num_rows)
    run(command)
    assert_same_rows(table_rows(store), expected)
    assert (
        Store(store).model(MODEL).info.provenance == Store(reference).model(MODEL).info.provenance
    )


def test_import_json_killed_while_replacing_keeps_the_old_rows(
    tmp_path: Path, trainer_json: Path
) -> None:
    store = tmp_path / "store"
    command = featstore("import-json", str(trainer_json), "--store", str(store))
    run(command)
    expected = table_rows(store)
    version = max(log_versions(store))
    before = data_files(store)
    kill_when(command, lambda: bool(data_files(store) - before))
    if max(log_versions(store)) == version:  # killed before its commit: the old rows
        assert committed_files(store) <= before
    assert_same_rows(table_rows(store), expected)
    run(command)
    assert_same_rows(table_rows(store), expected)
