"""`featstore migrate`: a version-1 store (one Parquet file per model and identity, written
here by hand) is refused by every command, then converted in place: rows identical,
provenance carried over, old files gone, and a killed migration finishes on a rerun."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner
from conftest import MODEL
from delta_checks import (
    data_files,
    featstore,
    kill_when,
    log_versions,
    run,
    synthetic_rows,
    write_v1_store,
)
from featstore_cli.main import main

from featstore.errors import StoreError
from featstore.store import Store
from featstore.store.fields import POSE_COLUMNS, SQPNP_POSE_COLUMNS
from featstore.store.format import FINGERPRINT_COLUMN

DIM = 16


def _v1_rows(count: int) -> dict[str, pa.Table]:
    return {f"id_{i:04d}": synthetic_rows(f"id_{i:04d}", 4, DIM, seed=i) for i in range(count)}


def _sorted(table: pa.Table) -> list[dict[str, object]]:
    return sorted(table.to_pylist(), key=lambda r: (r["identity"], r["role"], r["image_path"]))


def _migrated_rows(store: Path) -> pa.Table:
    return Store(store).sql("SELECT * FROM images", model=MODEL)


def _check_migrated(store: Path, v1: dict[str, pa.Table], provenance: dict[str, object]) -> None:
    folder = store / f"model={MODEL}"
    assert json.loads((store / "_featstore.json").read_text())["version"] == 2
    assert not list(folder.glob("identity=*")) and not (folder / "_provenance.json").exists()
    rows = _migrated_rows(store)
    fingerprints = dict(
        zip(
            rows.column("identity").to_pylist(),
            rows.column(FINGERPRINT_COLUMN).to_pylist(),
            strict=True,
        )
    )
    assert fingerprints == {name: f"fp-{name}" for name in v1}
    # `featstore migrate` then derives the head pose (`featstore derive`): the v1 rows and
    # provenance, plus the pose columns and their definition.
    derived = [c for c in (*POSE_COLUMNS, *SQPNP_POSE_COLUMNS) if c in rows.column_names]
    expected = pa.concat_tables(v1.values())
    expected = expected.drop_columns([c for c in derived if c in expected.column_names])
    assert _sorted(rows.drop_columns([FINGERPRINT_COLUMN, *derived])) == _sorted(expected)
    stored = dict(Store(store).model(MODEL).info.provenance)
    if derived:
        assert stored.pop("pose_definition") == "face000-pose-v1"
        assert stored.pop("sqpnp_pose_definition") == "featstore-pose-sqpnp-v1"
    assert stored == provenance


REFUSING = [
    ["info", "--store", "{s}"],
    ["query", "--store", "{s}", "select count(*) from images"],
    ["export-json", "--store", "{s}", "--out", "{t}/out.json"],
    ["report", "--store", "{s}", "--out", "{t}/report.html"],
    ["history", "--store", "{s}"],
    ["compact", "--store", "{s}"],
    ["vacuum", "--store", "{s}"],
    ["import-json", "{t}/in.json", "--store", "{s}"],
    ["extract", "--face-dir", "{t}", "--video-dir", "{t}", "--store", "{s}", "--cpu"],
]


def test_every_command_refuses_a_version_1_store_naming_migrate(tmp_path: Path) -> None:
    store = tmp_path / "v1"
    write_v1_store(store, _v1_rows(2), DIM)
    before = sorted(p.relative_to(store).as_posix() for p in store.rglob("*"))
    (tmp_path / "in.json").write_text(
        json.dumps({"a": {"face_image_path": "a.jpg", "face_features": [0.0] * DIM}})
    )
    for args in REFUSING:
        argv = [a.replace("{s}", str(store)).replace("{t}", str(tmp_path)) for a in args]
        result = CliRunner().invoke(main, argv)
        assert result.exit_code == 1, (argv, result.output)
        assert f"featstore migrate {store}" in result.output, (argv, result.output)
    with pytest.raises(StoreError, match="featstore migrate"):
        Store(store)
    from featstore.dataset.feature_dataset import FeatureDataset

    with pytest.raises(StoreError, match="featstore migrate"):
        FeatureDataset(store)
    assert sorted(p.relative_to(store).as_posix() for p in store.rglob("*")) == before


def test_migrate_keeps_rows_and_provenance_and_removes_the_old_files(tmp_path: Path) -> None:
    store = tmp_path / "v1"
    v1 = _v1_rows(5)
    provenance = write_v1_store(store, v1, DIM)
    result = CliRunner().invoke(main, ["migrate", str(store)])
    assert result.exit_code == 0, result.output
    assert "5 identities" in result.output and "version-2" in result.output
    _check_migrated(store, v1, provenance)
    again = CliRunner().invoke(main, ["migrate", str(store)])
    assert again.exit_code == 0 and "nothing to do" in again.output
    # The migration is one commit (the rows, with the provenance); `derive` then adds the
    # head pose in two (the rows with their pose columns, then the pose definition).
    assert log_versions(store) == [0, 1, 2]


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["writing", "committed"])
def test_a_killed_migration_finishes_on_a_rerun(tmp_path: Path, moment: str) -> None:
    pristine = tmp_path / "pristine"
    v1 = _v1_rows(500)
    provenance = write_v1_store(pristine, v1, DIM)
    store = tmp_path / "v1"
    shutil.copytree(pristine, store)
    command = featstore("migrate", str(store))
    if moment == "writing":  # a data file of the table exists, its commit does not
        kill_when(command, lambda: bool(data_files(store)))
    else:  # committed; the old folders being deleted
        kill_when(command, lambda: bool(log_versions(store)))
    with pytest.raises(StoreError, match="featstore migrate"):
        Store(store)  # still refused as version 1: the marker changes last
    run(command)
    _check_migrated(store, v1, provenance)


def test_a_cleanup_killed_midway_is_finished(tmp_path: Path) -> None:
    """Killed while deleting the old partitions: one folder has lost its data file but not
    itself. The rerun removes it too."""
    store = tmp_path / "v1"
    v1 = {f"id_{i:04d}": synthetic_rows(f"id_{i:04d}", 2, DIM, seed=i) for i in range(3)}
    write_v1_store(store, v1, DIM)
    run(featstore("migrate", str(store)))
    half_deleted = store / f"model={MODEL}" / "identity=id_0002"
    half_deleted.mkdir()  # what rmtree leaves when killed between the file and the folder
    (store / "_featstore.json").write_text('{"format": "featstore-store", "version": 1}')
    run(featstore("migrate", str(store)))
    assert not half_deleted.exists()


def _tree(store: Path) -> list[str]:
    return sorted(p.relative_to(store).as_posix() for p in store.rglob("*"))


def _damaged(tmp_path: Path, damage: str) -> tuple[Path, str]:
    """A version-1 store with one partition damaged; what the refusal must name."""
    store = tmp_path / "v1"
    write_v1_store(store, _v1_rows(5), DIM)
    folder = store / f"model={MODEL}"
    if damage == "renamed file":
        part = folder / "identity=id_0002"
        (part / "data.parquet").rename(part / "data.parquet.bak")
        return store, "identity=id_0002/data.parquet.bak"
    if damage == "another identity's rows":
        shutil.copy(folder / "identity=id_0001" / "data.parquet", folder / "identity=id_0003")
        return store, "identity=id_0003/data.parquet"
    data = folder / "identity=id_0004" / "data.parquet"
    data.write_bytes(data.read_bytes()[:-100])  # truncated
    return store, "identity=id_0004/data.parquet"


@pytest.mark.parametrize("damage", ["renamed file", "another identity's rows", "truncated"])
def test_migrate_refuses_a_partition_it_does_not_understand_and_deletes_nothing(
    tmp_path: Path, damage: str
) -> None:
    store, named = _damaged(tmp_path, damage)
    before = _tree(store)
    result = CliRunner().invoke(main, ["migrate", str(store)])
    assert result.exit_code == 1, result.output
    assert named in result.output, result.output
    assert "Traceback" not in result.output and len(result.output.splitlines()) <= 8
    if damage == "another identity's rows":
        assert "id_0001" in result.output
    assert _tree(store) == before  # nothing deleted, nothing written
    with pytest.raises(StoreError, match="featstore migrate"):
        Store(store)  # still a version-1 store
