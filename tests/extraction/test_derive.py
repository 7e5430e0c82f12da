"""`featstore derive`: a table made before the head pose gains it from stored columns only."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner
from conftest import MODEL, Extracted, Models, copy_store, run_extract
from delta_checks import build_store
from featstore_cli.main import main
from store_checks import drop_columns, table_rows, table_version

from featstore.extraction import derive as derive_module
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


def test_derive_streams_the_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """derive held the whole table (1.7 GB for 220,000 x 384): now it reads, poses and
    writes a batch at a time (featstore's bulk writer: a row group pending at most)."""
    store = tmp_path / "store"
    build_store(store, 1000, per_commit=1000, dim=16)  # 5,000 rows, no pose_definition
    before = table_rows(store)
    seen: list[int] = []
    with_pose = derive_module._with_pose

    def counting(rows: pa.Table, counts: list[int]) -> pa.Table:
        seen.append(rows.num_rows)
        return with_pose(rows, counts)

    monkeypatch.setattr(derive_module, "DERIVE_BATCH_ROWS", 256)
    monkeypatch.setattr(derive_module, "_with_pose", counting)
    [done] = derive(store)
    assert done.rows == 5000 and sum(seen) == 5000 and max(seen) <= 256
    after = table_rows(store)
    assert after.drop_columns(list(POSE_COLUMNS)).equals(before.drop_columns(list(POSE_COLUMNS)))
    assert after.column("euler_angles").null_count < after.num_rows
