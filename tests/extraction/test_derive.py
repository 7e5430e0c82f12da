"""`featstore derive`: a table made before the head pose gains it from stored columns only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner
from conftest import MODEL, Dataset, Extracted, Models, copy_store, run_extract
from delta_checks import build_store
from featstore_cli.main import main
from store_checks import drop_columns, table_rows, table_version

from featstore.extraction import derive as derive_module
from featstore.extraction.derive import derive
from featstore.store import Store
from featstore.store.fields import POSE_COLUMNS, SQPNP_POSE_COLUMNS


def _without_pose(extracted: Extracted, tmp_path: Path) -> Path:
    """The extracted store as a featstore without the pose wrote it."""
    store = copy_store(extracted.store, tmp_path / "store")
    drop_columns(store, list(POSE_COLUMNS))
    snapshot = Store(store).model(MODEL)
    provenance = dict(snapshot.provenance)
    del provenance["pose_definition"]
    snapshot.delta.alter.set_table_description(json.dumps(provenance, sort_keys=True))
    return store


def _without_stable_pose(store: Path) -> Path:
    """`store` as the featstore before featstore-pose-sqpnp-v1 left it (face000-pose-v1
    only)."""
    drop_columns(store, list(SQPNP_POSE_COLUMNS))
    snapshot = Store(store).model(MODEL)
    provenance = dict(snapshot.provenance)
    del provenance["sqpnp_pose_definition"]
    snapshot.delta.alter.set_table_description(json.dumps(provenance, sort_keys=True))
    return store


def _by_path(store: Path) -> dict[str, dict[str, object]]:
    return {row["image_path"]: row for row in table_rows(store).to_pylist()}


def test_derive_adds_the_stable_pose_to_a_store_made_before_it(
    extracted: Extracted, tmp_path: Path, models: Models
) -> None:
    store = _without_stable_pose(copy_store(extracted.store, tmp_path / "store"))
    assert "sqpnp_euler_angles" not in table_rows(store).column_names
    [done] = derive(store)
    assert done.definitions == ("featstore-pose-sqpnp-v1",) and done.posed > 0
    got, want = _by_path(store), _by_path(extracted.store)
    assert got.keys() == want.keys()
    for path, row in got.items():  # every column as extraction wrote it, face000's included
        assert row == want[path], path
    assert Store(store).model(MODEL).provenance == Store(extracted.store).model(MODEL).provenance
    assert run_extract(extracted.dataset, store, models).images_extracted == 0


def test_a_store_made_before_the_stable_pose_takes_new_identities_then_derive_fills_it(
    mini_dataset: Dataset, tmp_path: Path, models: Models
) -> None:
    """After the upgrade, extract adds identities to an older store without refusing it
    (their rows carry the stable pose); derive then gives the older rows theirs."""
    root = Path(shutil.copytree(mini_dataset.root, tmp_path / "data"))
    tree = Dataset(root, root / mini_dataset.face_dir.name, root / mini_dataset.video_dir.name)
    aside = tmp_path / "aside"
    aside.mkdir()
    shutil.move(tree.face_dir / "person_001.jpg", aside / "person_001.jpg")
    shutil.move(tree.video_dir / "person_001", aside / "person_001")
    store = tmp_path / "store"
    run_extract(tree, store, models)
    _without_stable_pose(store)
    shutil.move(aside / "person_001.jpg", tree.face_dir / "person_001.jpg")
    shutil.move(aside / "person_001", tree.video_dir / "person_001")

    summary = run_extract(tree, store, models)  # no "holds rows made with other settings"
    assert summary.images_extracted == 4
    rows = table_rows(store).to_pylist()
    for row in rows:
        new = row["identity"] == "person_001"
        has_stable = row["sqpnp_euler_angles"] is not None
        assert has_stable == (new and row["euler_angles"] is not None), row["image_path"]
    assert "sqpnp_pose_definition" not in Store(store).model(MODEL).provenance

    [done] = derive(store)
    assert done.definitions == ("featstore-pose-sqpnp-v1",)
    fresh = tmp_path / "fresh"
    run_extract(tree, fresh, models)
    got, want = _by_path(store), _by_path(fresh)
    for path, row in got.items():
        for column in (*POSE_COLUMNS, *SQPNP_POSE_COLUMNS):
            assert row[column] == want[path][column], (path, column)
    assert Store(store).model(MODEL).provenance["sqpnp_pose_definition"] == (
        "featstore-pose-sqpnp-v1"
    )


def test_derive_adds_exactly_the_pose_extraction_computes(
    extracted: Extracted, tmp_path: Path, models: Models
) -> None:
    store = _without_pose(extracted, tmp_path)
    assert "euler_angles" not in table_rows(store).column_names
    [done] = derive(store)
    assert not done.already_done and done.rows == table_rows(extracted.store).num_rows
    assert done.posed > 0
    got, want = table_rows(store), table_rows(extracted.store)
    for column in POSE_COLUMNS:  # the same function on the same stored float32 values
        assert got.column(column).to_pylist() == want.column(column).to_pylist(), column
    assert got.drop_columns(list(POSE_COLUMNS)).equals(want.drop_columns(list(POSE_COLUMNS)))
    assert Store(store).model(MODEL).provenance == Store(extracted.store).model(MODEL).provenance

    version = table_version(store)
    [again] = derive(store)  # idempotent: nothing to do, nothing committed
    assert again.already_done and table_version(store) == version
    # The provenance is the extraction's again: a rerun finds everything current.
    assert run_extract(extracted.dataset, store, models).images_extracted == 0


def test_derive_on_the_command_line(extracted: Extracted, tmp_path: Path) -> None:
    store = _without_pose(extracted, tmp_path)
    result = CliRunner().invoke(main, ["derive", "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert f"model {MODEL}: head pose (face000-pose-v1) derived for" in result.output
    again = CliRunner().invoke(main, ["derive", "--store", str(store)])
    assert "nothing to derive" in again.output


def test_derive_streams_the_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """derive held the whole table (1.7 GB for 220,000 x 384): now it reads, poses and
    writes a batch at a time (featstore's bulk writer: a row group pending at most)."""
    store = tmp_path / "store"
    build_store(store, 1000, per_commit=1000, dim=16)  # 5,000 rows, no pose_definition
    before = table_rows(store)
    seen: list[int] = []
    with_pose = derive_module._with_pose

    def counting(rows: pa.Table, definitions: tuple[object, ...], counts: list[int]) -> pa.Table:
        seen.append(rows.num_rows)
        return with_pose(rows, definitions, counts)  # type: ignore[arg-type]

    monkeypatch.setattr(derive_module, "DERIVE_BATCH_ROWS", 256)
    monkeypatch.setattr(derive_module, "_with_pose", counting)
    [done] = derive(store)
    assert done.rows == 5000 and sum(seen) == 5000 and max(seen) <= 256
    after = table_rows(store)
    derived = [*POSE_COLUMNS, *SQPNP_POSE_COLUMNS]  # no definition recorded: both derived
    assert after.drop_columns(derived).equals(before.drop_columns(derived))
    assert after.column("euler_angles").null_count < after.num_rows
    assert after.column("sqpnp_euler_angles").null_count < after.num_rows
