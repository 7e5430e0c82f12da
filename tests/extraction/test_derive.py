"""`featstore derive`: a table made before the head pose gains it from stored columns only."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from conftest import MODEL, Extracted, Models, copy_store, run_extract
from featstore_cli.main import main
from store_checks import drop_columns, table_rows, table_version

from featstore.extraction.derive import POSE_COLUMNS, derive
from featstore.store import Store


def _without_pose(extracted: Extracted, tmp_path: Path) -> Path:
    """The extracted store as a featstore without the pose wrote it."""
    store = copy_store(extracted.store, tmp_path / "store")
    drop_columns(store, list(POSE_COLUMNS))
    snapshot = Store(store).model(MODEL)
    provenance = dict(snapshot.provenance)
    del provenance["pose_definition"]
    snapshot.delta.alter.set_table_description(json.dumps(provenance, sort_keys=True))
    return store


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
    assert f"model {MODEL}: head pose derived for" in result.output
    again = CliRunner().invoke(main, ["derive", "--store", str(store)])
    assert "nothing to derive" in again.output
