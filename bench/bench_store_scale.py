"""Store version 2 at scale: do reads stay flat as identities grow? (issue: Delta store)

    .venv/bin/python bench/bench_store_scale.py                          # 1k, 10k, 100k
    .venv/bin/python bench/bench_store_scale.py --identities 1000,10000   # make bench

Builds stores of N identities x 10 frames x 384 dims through the library's writer
(`TableWriter`, commits of 5,000 identities, then `compact` as extract does), then times
each command in a fresh process (import and startup included) and reads its peak RSS.
Every figure is also printed as a ratio to the smallest store of the same run, which is
what the goals are about (this machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
from bench_store import timed as timed_with_output

from featstore.extraction.pipeline import row_schema
from featstore.store import Store
from featstore.store.format import fixed_size_column
from featstore.store.maintenance import compact
from featstore.store.writer import TableWriter

MODEL = "dinov2_vits14"
FRAMES, DIM = 10, 384
FEATSTORE = [sys.executable, "-m", "featstore"]
PROVENANCE = {"model": MODEL, "feature_dim": DIM, "source": "bench", "base_dir": "/data"}


def build_store(store: Path, identities: int, seed: int = 0) -> None:
    """`identities` x (1 frontal + FRAMES frames) ok rows with random unit features."""
    rng = np.random.default_rng(seed)
    table = Store(store, create=True).table(MODEL)
    table.claim(PROVENANCE, row_schema(DIM), overwrite=True)
    writer = TableWriter(table, PROVENANCE, command="bench", max_identities=5000, max_seconds=1e9)
    schema = row_schema(DIM)
    per = FRAMES + 1
    chunk = 5000
    now = pa.scalar(datetime.now(timezone.utc), pa.timestamp("us", "UTC"))
    for start in range(0, identities, chunk):
        names = [f"person_{i:06d}" for i in range(start, min(start + chunk, identities))]
        n = len(names) * per
        feats = rng.standard_normal((n, DIM)).astype(np.float32)
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
        kps = rng.uniform(100, 200, size=(n, 5, 2)).astype(np.float32)
        ok = np.ones(n, dtype=bool)
        frame = np.tile(np.arange(per) > 0, len(names))
        index = np.tile(np.arange(-1, FRAMES), len(names)).astype(np.int32)
        identity = np.repeat(names, per)
        columns = {
            "identity": pa.array(identity),
            "model": pa.array([MODEL] * n),
            "role": pa.array(np.where(frame, "frame", "face")),
            "image_path": pa.array(
                [f"video/{i}/{j:04d}.jpg" for i, j in zip(identity, index, strict=True)]
            ),
            "frame_index": pa.array(index, mask=~frame),
            "status": pa.array(["ok"] * n),
            "error": pa.nulls(n, pa.string()),
            "features": fixed_size_column(feats, ok, schema.field("features").type),
            "landmarks_2d": fixed_size_column(kps, ok, schema.field("landmarks_2d").type),
            "landmarks_3d": fixed_size_column(
                rng.uniform(-1, 1, (n, 5, 3)).astype(np.float32),
                ok,
                schema.field("landmarks_3d").type,
            ),
            "box": fixed_size_column(
                np.tile(np.float32([80, 60, 240, 200]), (n, 1)), ok, schema.field("box").type
            ),
            "det_score": pa.array(np.full(n, 0.99, np.float32)),
            "spherical_angles": fixed_size_column(
                rng.uniform(-30, 30, (n, 5)).astype(np.float32),
                frame,
                schema.field("spherical_angles").type,
            ),
            "avg_angle": pa.array(rng.uniform(-30, 30, n).astype(np.float32), mask=~frame),
            "width": pa.array(np.full(n, 320, np.int32)),
            "height": pa.array(np.full(n, 240, np.int32)),
            "file_size": pa.array(np.full(n, 20000, np.int64)),
            "extracted_at": pa.repeat(now, n),
            "input_fingerprint": pa.array(["bench"] * n),
        }
        for name in ("euler_angles", "rotation_matrix", "pose_landmarks_3d"):  # not measured
            columns[name] = pa.nulls(n, schema.field(name).type)
        rows = pa.Table.from_pydict(columns, schema=schema)
        for i, name in enumerate(names):  # whole identities, as extraction queues them
            writer.add(name, rows.slice(i * per, per))
    writer.flush()
    compact(store, model=MODEL)


def timed(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of a command run in a fresh process."""
    seconds, rss, _ = timed_with_output(command)
    return seconds, rss


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def measure(store: Path, work: Path) -> dict[str, tuple[float, float]]:
    s = str(store)
    cache = work / f"cache-{store.name}"
    dataset = (
        "import featstore, sys; "
        f"d = featstore.FeatureDataset({s!r}, cache_dir={str(cache)!r}); d[0]; print(len(d))"
    )
    plan = (
        "from featstore.store.store import Store; "
        f"print(len(Store({s!r}).model({MODEL!r}).fingerprints()))"
    )
    figures = {
        "query count(*)": timed([*FEATSTORE, "query", "--store", s, "SELECT count(*) FROM images"]),
        "GROUP BY valid_frames": timed(
            [*FEATSTORE, "query", "--store", s, "--format", "csv"]
            + ["SELECT identity, count(*) FROM valid_frames GROUP BY 1"]
        ),
        "one identity": timed(
            [*FEATSTORE, "query", "--store", s]
            + ["SELECT count(*) FROM images WHERE identity = 'person_000500'"]
        ),
        "info": timed([*FEATSTORE, "info", "--store", s]),
        "resume planning": timed(python(plan)),
        "FeatureDataset cold": timed(python(dataset)),
        "FeatureDataset warm": timed(python(dataset)),
    }
    out = work / f"{store.name}.json"
    figures["export-json"] = timed([*FEATSTORE, "export-json", "--store", s, "--out", str(out)])
    out.unlink(missing_ok=True)
    shutil.rmtree(cache, ignore_errors=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--identities",
        default="1000,10000,100000",
        help="store sizes to build, comma-separated (the first is the ratios' baseline)",
    )
    args = parser.parse_args()
    sizes = [int(n) for n in args.identities.split(",")]
    work = Path(tempfile.mkdtemp(prefix="featstore-bench-scale-"))
    results: dict[int, dict[str, tuple[float, float]]] = {}
    try:
        for n in sizes:
            store = work / f"store-{n}"
            started = time.perf_counter()
            build_store(store, n)
            files = len(Store(store).model(MODEL).files)
            print(
                f"built {n:,} identities x {FRAMES + 1} rows x {DIM} dims in "
                f"{time.perf_counter() - started:.0f} s ({files} files after compaction)",
                flush=True,
            )
            results[n] = measure(store, work)
            shutil.rmtree(store, ignore_errors=True)
        base = results[sizes[0]]
        print(f"\nwhole-process seconds (ratio to {sizes[0]:,} identities); goals: reads <= 1.5x,")
        print("export-json peak RSS <= 1.3x, every query < 1 s at 100,000 identities")
        header = "".join(f"{n:>22,}" for n in sizes)
        print(f"{'':24}{header}")
        for name in base:
            cells = []
            for n in sizes:
                seconds, rss = results[n][name]
                cells.append(f"{seconds:7.2f} s ({seconds / base[name][0]:4.1f}x)")
            print(f"{name:24}" + "".join(f"{c:>22}" for c in cells))
        rss = {n: results[n]["export-json"][1] for n in sizes}
        cells = [f"{rss[n]:6.0f} MiB ({rss[n] / rss[sizes[0]]:3.1f}x)" for n in sizes]
        print(f"{'export-json peak RSS':24}" + "".join(f"{c:>22}" for c in cells))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
