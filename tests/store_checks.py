"""Checks on a store that several test modules share: its files, its tables' rows."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
from conftest import MODEL, Dataset, Models

from featstore.store import Store


def store_files(store: Path) -> dict[str, bytes]:
    return {
        p.relative_to(store).as_posix(): p.read_bytes()
        for p in sorted(store.rglob("*"))
        if p.is_file()
    }


def table_rows(store: Path | str, model: str = MODEL, version: int | None = None) -> pa.Table:
    """Every row of the model's table at `version` (the files its log lists), in a stable
    order: (identity, role, frame_index, image_path)."""
    import pyarrow.dataset as pads

    snapshot = Store(store).model(model, version)
    schema = snapshot.schema()
    if not snapshot.files:
        return schema.empty_table()
    location = Store(store).location
    rows = pads.dataset(snapshot.files, filesystem=location.fs, format="parquet").to_table()
    return rows.sort_by(
        [
            ("identity", "ascending"),
            ("role", "ascending"),
            ("frame_index", "ascending"),
            ("image_path", "ascending"),
        ]
    )


def identity_rows(store: Path | str, identity: str, model: str = MODEL) -> list[dict]:
    rows = table_rows(store, model)
    return [r for r in rows.to_pylist() if r["identity"] == identity]


def identities(store: Path | str, model: str = MODEL) -> list[str]:
    """The identities the model's table holds, sorted ([] without a store or table)."""
    if not (Path(store) / "_featstore.json").is_file() or model not in Store(store).model_names():
        return []
    return sorted(set(table_rows(store, model).column("identity").to_pylist()))


def table_version(store: Path | str, model: str = MODEL) -> int:
    return Store(store).model(model).version


def assert_no_duplicates(rows: pa.Table) -> None:
    columns = [rows.column(c).to_pylist() for c in ("identity", "role", "image_path")]
    keys = list(zip(*columns, strict=True))
    assert len(keys) == len(set(keys)), "duplicate (identity, role, image_path) rows"


def assert_same_rows(a: pa.Table, b: pa.Table) -> None:
    """Equal tables but for `extracted_at`; floats to 1e-5 (batches may group differently)."""
    a, b = a.drop_columns(["extracted_at"]), b.drop_columns(["extracted_at"])
    assert_no_duplicates(a)
    assert a.schema == b.schema
    assert a.num_rows == b.num_rows
    for name in a.column_names:
        x, y = a.column(name).to_pylist(), b.column(name).to_pylist()
        if pa.types.is_string(a.schema.field(name).type) or pa.types.is_integer(
            a.schema.field(name).type
        ):
            assert x == y, name
            continue
        assert [v is None for v in x] == [v is None for v in y], name
        for u, v in zip(x, y, strict=True):
            if u is not None:
                np.testing.assert_allclose(np.array(u), np.array(v), rtol=0, atol=1e-5)


def extract_args(dataset: Dataset, store: Path | str, models: Models, *extra: str) -> list[str]:
    """`featstore extract` arguments for the stand-in models, small batches, no workers."""
    return [
        "extract",
        "--face-dir",
        str(dataset.face_dir),
        "--video-dir",
        str(dataset.video_dir),
        "--store",
        str(store),
        "--model",
        MODEL,
        "--weights",
        str(models.weights),
        "--insightface-root",
        str(models.insightface_root),
        "--cpu",
        "--no-progress",
        "--batch-size",
        "2",
        "--workers",
        "0",
        *extra,
    ]


def extract_command(dataset: Dataset, store: Path, models: Models) -> list[str]:
    return [sys.executable, "-m", "featstore", *extract_args(dataset, store, models)]


def drop_columns(store: Path | str, columns: list[str], model: str = MODEL) -> None:
    """Rewrite the model's table without `columns` (a store made before they existed)."""
    from deltalake import write_deltalake

    snapshot = Store(store).table(model).open()
    rows = table_rows(store, model).drop_columns(columns)
    write_deltalake(snapshot.delta, rows, mode="overwrite", schema_mode="overwrite")
