"""Helpers for the store-version-2 fault tests: run the CLI, kill it, read and compare tables.

Rows are read through `Store.sql` (DuckDB over the files the Delta log lists), never
through `DeltaTable.to_pyarrow_table()` (which can abort a process at exit, delta-rs 2184).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from conftest import MODEL

from featstore.extraction.decoding import ImageTask
from featstore.extraction.detection import Detection
from featstore.extraction.rows import ImageResult, identity_table
from featstore.store import Store
from featstore.store.writer import TableWriter

KEY = ("identity", "role", "image_path")


def featstore(*args: str, commit_every: int | None = None) -> list[str]:
    """The command line of `python -m featstore ARGS`; `commit_every`: an extract that
    commits every N identities (the default, 256, would commit a small run once)."""
    extra = ["--commit-every", str(commit_every)] if commit_every is not None else []
    return [sys.executable, "-m", "featstore", *args, *extra]


def run(command: list[str], *, expect: int = 0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == expect, (done.returncode, done.stdout, done.stderr)
    return done


def kill_when(command: list[str], ready: Callable[[], bool], *, timeout: float = 300) -> str:
    """Start `command`, SIGKILL it as soon as `ready()` holds; its output so far.

    Fails when the command ends first: the moment was missed and the test proves nothing.
    """
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None:
                output = proc.communicate()[0].decode(errors="replace")
                raise AssertionError(f"ended (rc {proc.returncode}) before the moment: {output}")
            assert time.monotonic() < deadline, "the moment did not come"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        output = proc.communicate()[0].decode(errors="replace")
    assert proc.returncode == -signal.SIGKILL, output
    return output


def log_versions(store: Path, model: str = MODEL) -> list[int]:
    """The versions whose commit file exists in the model's `_delta_log`."""
    log = store / f"model={model}" / "_delta_log"
    if not log.is_dir():
        return []
    return sorted(int(p.stem) for p in log.glob("*.json") if p.stem.isdigit())


def data_files(store: Path, model: str = MODEL) -> set[str]:
    folder = store / f"model={model}"
    return {p.name for p in folder.glob("*.parquet")} if folder.is_dir() else set()


def committed_files(store: Path, model: str = MODEL) -> set[str]:
    """The data files the latest version lists."""
    snap = Store(store).model(model)
    return {Path(f).name for f in snap.files}


def table_rows(store: Path | str, *, model: str = MODEL, version: int | None = None) -> pa.Table:
    """The model's rows at `version`, without `extracted_at`, sorted by (identity, role, path)."""
    table = Store(store).sql(
        "SELECT * EXCLUDE (extracted_at) FROM images ORDER BY identity, role, image_path",
        model=model,
        version=version,
    )
    return table


def assert_no_duplicates(rows: pa.Table) -> None:
    keys = Counter(zip(*(rows.column(k).to_pylist() for k in KEY), strict=True))
    twice = [k for k, n in keys.items() if n > 1]
    assert not twice, f"duplicate (identity, role, image_path): {twice[:5]}"


def assert_same_rows(a: pa.Table, b: pa.Table, *, atol: float = 1e-5) -> None:
    """Equal row sets (sorted by the key); floats to `atol` (batches may group differently)."""
    assert_no_duplicates(a)
    assert_no_duplicates(b)
    assert sorted(a.column_names) == sorted(b.column_names)
    b = b.select(a.column_names)
    assert a.num_rows == b.num_rows, (a.num_rows, b.num_rows)
    for name in a.column_names:
        x, y = a.column(name).to_pylist(), b.column(name).to_pylist()
        kind = a.schema.field(name).type
        if not (pa.types.is_list(kind) or pa.types.is_floating(kind)):
            assert x == y, name
            continue
        assert [v is None for v in x] == [v is None for v in y], name
        for u, v in zip(x, y, strict=True):
            if u is not None:
                np.testing.assert_allclose(np.array(u), np.array(v), rtol=0, atol=atol)


def identities_whole(rows: pa.Table, reference: pa.Table) -> set[str]:
    """The identities of `rows`, after checking each has exactly its reference rows' keys."""

    def keys(t: pa.Table) -> dict[str, set[tuple[str, str]]]:
        out: dict[str, set[tuple[str, str]]] = {}
        for i, r, p in zip(*(t.column(k).to_pylist() for k in KEY), strict=True):
            out.setdefault(i, set()).add((r, p))
        return out

    ours, theirs = keys(rows), keys(reference)
    for name, found in ours.items():
        assert found == theirs.get(name), f"identity {name} is not whole: {sorted(found)}"
    return set(ours)


# -- synthetic stores (no extraction) ------------------------------------------------------


def synthetic_rows(name: str, frames: int, dim: int, seed: int, model: str = MODEL) -> pa.Table:
    """One identity's rows as extraction builds them; every third frame has no face."""
    rng = np.random.default_rng(seed)
    box = np.array([80, 60, 240, 200], dtype=np.float32)
    results = []
    for j in range(frames + 1):
        role, index = ("face", None) if j == 0 else ("frame", j - 1)
        folder = "face" if j == 0 else f"video/{name}"
        task = ImageTask(name, role, Path(f"/data/{folder}/{j:04d}.jpg"), index)
        if j and j % 3 == 0:
            results.append(ImageResult(task, "no_face", "no face found", width=320, height=240))
            continue
        feats = rng.standard_normal(dim).astype(np.float32)
        kps = rng.uniform(100, 200, size=(5, 2)).astype(np.float32)
        results.append(
            ImageResult(
                task,
                "ok",
                None,
                Detection(box=box, landmarks_2d=kps, score=0.9),
                {model: feats / np.linalg.norm(feats)},
                320,
                240,
                20000,
            )
        )
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return identity_table(results, model=model, dim=dim, base_dir=Path("/data"), extracted_at=now)


def synthetic_provenance(dim: int, model: str = MODEL) -> dict[str, Any]:
    return {"model": model, "feature_dim": dim, "source": "test", "base_dir": "/data"}


def build_store(
    store: Path | str,
    identities: int,
    *,
    frames: int = 4,
    dim: int = 8,
    per_commit: int = 1,
    prefix: str = "id",
) -> None:
    """A version-2 store of synthetic rows, one commit (and data file) per `per_commit`."""
    from featstore.extraction.pipeline import row_schema

    opened = Store(store, create=True)
    table = opened.table(MODEL)
    provenance = synthetic_provenance(dim)
    table.claim(provenance, row_schema(dim), overwrite=False)
    writer = TableWriter(table, provenance, command="test", max_identities=per_commit)
    for i in range(identities):
        name = f"{prefix}_{i:05d}"
        writer.add(name, synthetic_rows(name, frames, dim, seed=i), fingerprint=f"fp-{i}")
    writer.flush()


def write_v1_store(store: Path, identities: dict[str, pa.Table], dim: int) -> dict[str, Any]:
    """A version-1 store written by hand: marker, provenance, one file per identity.

    Returns the provenance written.
    """
    store.mkdir(parents=True)
    (store / "_featstore.json").write_text(
        json.dumps({"format": "featstore-store", "version": 1}), "utf-8"
    )
    folder = store / f"model={MODEL}"
    folder.mkdir()
    provenance = {**synthetic_provenance(dim), "featstore_version": "0.0.9"}
    (folder / "_provenance.json").write_text(json.dumps(provenance), "utf-8")
    for name, rows in identities.items():
        part = folder / f"identity={name}"
        part.mkdir()
        metadata = {
            b"featstore.provenance": json.dumps(provenance).encode(),
            b"featstore.input_fingerprint": f"fp-{name}".encode(),
        }
        pq.write_table(rows.replace_schema_metadata(metadata), part / "data.parquet")
    return provenance
