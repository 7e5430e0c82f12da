"""Store-side figures: query, info, export-json, import-json (issue: SQL and JSON).

    .venv/bin/python bench/bench_store.py [--identities 1000] [--frames 100] [--dim 768]

Builds a store of identities x frames rows with random unit features directly through
the library's row and partition writers (extraction would take hours here), then times
each command in a fresh process and reads its peak RSS. Ratios are against baselines
measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from featstore.extraction.decoding import ImageTask
from featstore.extraction.detection import Detection
from featstore.extraction.pipeline import row_schema
from featstore.extraction.rows import ImageResult, identity_table
from featstore.store import Store
from featstore.store.writer import TableWriter

MODEL = "dinov2_vitb14"
FEATSTORE = [sys.executable, "-m", "featstore"]


def build_store(
    store: Path,
    identities: int,
    frames: int,
    dim: int,
    seed: int = 0,
    *,
    model: str = MODEL,
    spread: float | None = None,
) -> None:
    """Random unit features; with `spread`, each identity's around its own direction
    (`spread` = noise / signal), so cosines within an identity look like ArcFace's."""
    rng = np.random.default_rng(seed)
    provenance = {"model": model, "feature_dim": dim, "source": "bench", "base_dir": "/data"}
    table = Store(store, create=True).table(model)
    table.claim(provenance, row_schema(dim), overwrite=True)
    writer = TableWriter(table, provenance, command="bench", max_identities=1000)
    now = datetime.now(timezone.utc)
    box = np.array([80, 60, 240, 200], dtype=np.float32)
    for i in range(identities):
        name = f"person_{i:05d}"
        feats = rng.standard_normal((frames + 1, dim)).astype(np.float32)
        if spread is not None:
            feats = rng.standard_normal(dim).astype(np.float32) / np.sqrt(dim) + feats * (
                np.float32(spread) / np.sqrt(dim)
            )
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
        kps = rng.uniform(100, 200, size=(frames + 1, 5, 2)).astype(np.float32)
        results = []
        for j in range(frames + 1):
            role, index = ("face", None) if j == 0 else ("frame", j - 1)
            path = Path(f"/data/{'face' if j == 0 else 'video/' + name}/{j:04d}.jpg")
            results.append(
                ImageResult(
                    task=ImageTask(name, role, path, index),
                    status="ok",
                    error=None,
                    detection=Detection(box=box, landmarks_2d=kps[j], score=0.99),
                    features={model: feats[j]},
                    width=320,
                    height=240,
                    file_size=20000,
                )
            )
        rows = identity_table(
            results, model=model, dim=dim, base_dir=Path("/data"), extracted_at=now
        )
        writer.add(name, rows, fingerprint="bench")
    writer.flush()


def build_store_verbose(store: Path, identities: int, frames: int, dim: int) -> None:
    """`build_store`, then a line saying what was built and how long it took."""
    started = time.perf_counter()
    build_store(store, identities, frames, dim)
    print(
        f"store: {identities} identities x {frames} frames = {identities * frames} frames "
        f"x {dim} dims (built in {time.perf_counter() - started:.0f} s)"
    )


def timed(command: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) and stdout of a command run in a fresh process."""
    probe = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "dt = time.perf_counter() - t; "
        "sys.stderr.write(r.stderr); assert r.returncode == 0, r.returncode; "
        "print(dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024); "
        "print(r.stdout, end='')"
    )
    out = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{command} failed:\n{out.stderr}")
    first, _, rest = out.stdout.partition("\n")
    seconds, rss = (float(x) for x in first.split())
    return seconds, rss, rest


def seed_style_dump(store: Path, out: Path) -> float:
    """The seed's way: build the whole document from Python lists, then json.dump it."""
    from featstore.store import Store

    start = time.perf_counter()
    table = Store(store).sql(
        "SELECT identity, image_path, features, landmarks_2d, landmarks_3d, box, "
        "spherical_angles, avg_angle, face_image_path, face_features, face_landmarks_2d, "
        "face_landmarks_3d, face_box FROM valid_frames ORDER BY identity, frame_index"
    )
    doc: dict[str, dict] = {}
    for row in table.to_pylist():
        entry = doc.setdefault(
            row["identity"],
            {
                "face_image_path": row["face_image_path"],
                "face_features": row["face_features"],
                "face_landmarks_2d": row["face_landmarks_2d"],
                "face_landmarks_3d": row["face_landmarks_3d"],
                "face_box": row["face_box"],
                "video_data": [],
            },
        )
        entry["video_data"].append(
            {
                k: row[k]
                for k in (
                    "image_path",
                    "features",
                    "landmarks_2d",
                    "landmarks_3d",
                    "box",
                    "spherical_angles",
                    "avg_angle",
                )
            }
        )
    for entry in doc.values():
        n = len(entry["video_data"])
        entry.update(
            total_video_images=n,
            valid_video_images=n,
            feature_dim=len(entry["face_features"]),
            dinov2_model=MODEL,
        )
    with out.open("w") as f:
        json.dump(doc, f)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--identities", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument(
        "--grow-identities", type=int, default=10000, help="second store, same frame count"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="featstore-bench-store-"))
    try:
        store = work / "store"
        build_store_verbose(store, args.identities, args.frames, args.dim)
        q = "SELECT identity, count(*) FROM valid_frames GROUP BY 1"
        q_s, q_rss, _ = timed([*FEATSTORE, "query", "--store", str(store), q, "--format", "csv"])
        i_s, i_rss, _ = timed([*FEATSTORE, "info", "--store", str(store)])
        goal = "(goal < 1 s; whole process)"
        print(f"featstore query (GROUP BY over valid_frames): {q_s:.2f} s  {goal}")
        print(f"featstore info:                              {i_s:.2f} s  {goal}")

        out = work / "export.json"
        e_s, e_rss, _ = timed([*FEATSTORE, "export-json", "--store", str(store), "--out", str(out)])
        size_mb = out.stat().st_size / 1e6
        base_s = seed_style_dump(store, work / "seed.json")
        print(
            f"export-json: {size_mb:.0f} MB in {e_s:.1f} s = {size_mb / e_s:.0f} MB/s, "
            f"peak RSS {e_rss:.0f} MiB"
        )
        print(
            f"seed-style json.dump of the same content: {size_mb / base_s:.0f} MB/s; "
            f"export-json is {base_s / e_s:.1f}x faster (goal >= 10x)"
        )
        m_s, m_rss, _ = timed(
            [*FEATSTORE, "import-json", str(out), "--store", str(work / "imported")]
        )
        print(f"import-json: {m_s:.1f} s ({size_mb / m_s:.0f} MB/s), peak RSS {m_rss:.0f} MiB")

        if args.grow_identities:
            big = work / "store_grow"
            frames = max(1, args.identities * args.frames // args.grow_identities)
            build_store(big, args.grow_identities, frames, args.dim, seed=1)
            g_s, _, _ = timed([*FEATSTORE, "query", "--store", str(big), q, "--format", "csv"])
            print(
                f"featstore query at {args.grow_identities} identities x {frames} frames: "
                f"{g_s:.2f} s "
                f"(vs {q_s:.2f} s at {args.identities})"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
