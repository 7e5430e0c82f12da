"""Checks on a store that several test modules share: its files, temporaries, rows."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
from conftest import MODEL, Dataset, Models

from featstore.store.layout import DATA_FILE, model_dir


def store_files(store: Path) -> dict[str, bytes]:
    return {
        p.relative_to(store).as_posix(): p.read_bytes()
        for p in sorted(store.rglob("*"))
        if p.is_file()
    }


def data_files(store: Path) -> list[str]:
    return sorted(
        p.relative_to(store).as_posix()
        for p in model_dir(store, MODEL).glob(f"identity=*/{DATA_FILE}")
    )


def temporaries(store: Path) -> list[Path]:
    return sorted(store.rglob("*.tmp-*"))


def assert_same_rows(a: pa.Table, b: pa.Table) -> None:
    """Equal tables but for `extracted_at`; floats to 1e-5 (batches may group differently)."""
    a, b = a.drop_columns(["extracted_at"]), b.drop_columns(["extracted_at"])
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


def extract_command(dataset: Dataset, store: Path, models: Models) -> list[str]:
    return [
        sys.executable,
        "-m",
        "featstore",
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
    ]
