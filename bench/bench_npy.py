"""face000's npy training directory: export-npy, import-npy, FeatureDataset(DIR), and
extraction with `--model arcface` (issue: the researchers' current trainers).

    .venv/bin/python bench/bench_npy.py [--full] [--seed-repo PATH]

Quick by default (2,000 and 10,000 frames, a 50-image tree); `--full` (or `make bench
FULL=1`) measures 10,000 and 100,000 frames and a 220-image tree. Stores are built with
random unit 512-dim features and random keypoints through the library's row writer
(bench_store's generator), 50 frames an identity. Every case runs in a fresh process;
time and peak RSS (ru_maxrss).

1. `featstore export-npy`: rows/s (front + video rows written) and peak RSS; the RSS
   flatness ratio is the larger size's peak over the smaller's.
2. `featstore import-npy` of that directory: rows/s, peak RSS, flatness.
3. `FeatureDataset(DIR)` first construction (building its cache) against the construction
   of the seed's Aligned3DFaceDataset, re-implemented here stand-alone (LABELLED: a copy
   of its loading logic, not the seed's code): json.load of both metadata files, the
   originals as float32 arrays, np.load of the four npy files (its default
   load_in_memory=True), the person_name pairing loops.
4. Extraction of a small generated tree with `--model arcface` (featstore, CPU): images/s;
   with `--seed-repo PATH` (a checkout of Jasolicon/face000) also the seed's
   `extract_and_align_3d_data.py` on the same tree with the same synthetic pack (CPU).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_store import FEATSTORE, build_store, timed  # noqa: E402

ARCFACE = "arcface_buffalo_l"
FRAMES_PER_IDENTITY = 50

SEED_LOADING = r"""
# A stand-alone re-implementation of Aligned3DFaceDataset's construction (face000,
# train_transformer3D/dataset.py): the same reads and loops, for timing only.
import json, sys, time
t = time.perf_counter()
import numpy as np
import torch  # the seed's dataset.py imports it at the top
d = sys.argv[1]
front = json.load(open(f"{d}/front_metadata.json", encoding="utf-8"))
video = json.load(open(f"{d}/video_metadata.json", encoding="utf-8"))
scale = front["standard_info"].get("standard_scale", 1.0)
front_orig = np.array(front["landmarks_3d_original"], dtype=np.float32)
video_orig = (np.array(video["landmarks_3d_original"], dtype=np.float32)
              if video["landmarks_3d_original"] else None)
front_poses = np.array(front["poses"], dtype=np.float32)
video_poses = np.array(video["poses"], dtype=np.float32)
arrays = [np.load(f"{d}/{n}") for n in ("front_feature.npy", "front_keypoints.npy",
                                        "video_feature.npy", "video_keypoints.npy")]
front_idx, video_idx = {}, {}
for i, m in enumerate(front["metadata"]):
    front_idx.setdefault(m["person_name"], []).append(i)
for i, m in enumerate(video["metadata"]):
    video_idx.setdefault(m["person_name"], []).append(i)
samples = [{"front_idx": f, "video_idx": v, "person_name": p}
           for p in front_idx if p in video_idx for f in front_idx[p] for v in video_idx[p]]
print(len(samples), time.perf_counter() - t)
"""

FEATSTORE_DATASET = r"""
import sys, time
t = time.perf_counter()
from featstore import FeatureDataset
ds = FeatureDataset(sys.argv[1], position_encoding="euler_angles", cache_dir=sys.argv[2],
                    extra_fields=("keypoints_3d", "front_keypoints_3d"))
ds[0]
print(len(ds), time.perf_counter() - t)
"""


def store_and_dir(work: Path, frames: int) -> tuple[Path, Path, int]:
    identities = max(1, frames // FRAMES_PER_IDENTITY)
    store = work / f"store_{frames}"
    started = time.perf_counter()
    build_store(store, identities, FRAMES_PER_IDENTITY, 512, model=ARCFACE)
    seconds = time.perf_counter() - started
    print(f"built {identities} x {FRAMES_PER_IDENTITY} frames in {seconds:.0f} s")
    return store, work / f"npy_{frames}", identities * (FRAMES_PER_IDENTITY + 1)


def part_npy(work: Path, sizes: list[int]) -> None:
    rows: dict[str, list[tuple[int, float, float]]] = {"export-npy": [], "import-npy": []}
    data: dict[str, list[tuple[int, float, float, float, float]]] = {"dataset": []}
    for frames in sizes:
        store, out, total = store_and_dir(work, frames)
        seconds, rss, _ = timed(
            [*FEATSTORE, "export-npy", "--store", str(store), "--out", str(out)]
        )
        rows["export-npy"].append((frames, total / seconds, rss))
        seconds, rss, _ = timed(
            [*FEATSTORE, "import-npy", str(out), "--store", str(work / f"imported_{frames}")]
        )
        rows["import-npy"].append((frames, total / seconds, rss))
        cache = work / f"cache_{frames}"
        ours_s, ours_rss, ours_out = timed(
            [sys.executable, "-c", FEATSTORE_DATASET, str(out), str(cache)]
        )
        seed_s, seed_rss, seed_out = timed([sys.executable, "-c", SEED_LOADING, str(out)])
        assert ours_out.split()[0] == seed_out.split()[0], (ours_out, seed_out)  # same pairs
        data["dataset"].append((frames, ours_s, ours_rss, seed_s, seed_rss))
        shutil.rmtree(store)
        shutil.rmtree(work / f"imported_{frames}")
    print("\n| command | frames | rows/s | peak RSS MiB | RSS ratio to the smallest size |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for command, results in rows.items():
        for frames, rate, rss in results:
            print(
                f"| {command} | {frames:,} | {rate:,.0f} | {rss:,.0f} | {rss / results[0][2]:.2f} |"
            )
    print(
        "\n| frames | FeatureDataset(DIR) first construction s | peak RSS MiB | seed's "
        "Aligned3DFaceDataset construction (re-implemented) s | peak RSS MiB | time ratio |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for frames, ours_s, ours_rss, seed_s, seed_rss in data["dataset"]:
        print(
            f"| {frames:,} | {ours_s:.2f} | {ours_rss:,.0f} | {seed_s:.2f} | {seed_rss:,.0f} "
            f"| {ours_s / seed_s:.2f} |"
        )


def part_extract(work: Path, identities: int, frames: int, seed_repo: Path | None) -> None:
    from featstore.synthetic.detector import write_synthetic_insightface_pack
    from featstore.synthetic.images import generate_face_tree

    tree = work / "tree"
    face, video = generate_face_tree(tree, identities=identities, frames_per_identity=frames)
    home = work / "home"
    write_synthetic_insightface_pack(home / ".insightface", with_recognition=True)
    images = identities * (frames + 1)
    command = [
        *FEATSTORE,
        "extract",
        "--face-dir",
        str(face),
        "--video-dir",
        str(video),
        "--store",
        str(work / "x_store"),
        "--base-dir",
        str(tree),
        "--model",
        "arcface",
        "--insightface-root",
        str(home / ".insightface"),
        "--cpu",
        "--no-progress",
    ]
    seconds, _, _ = timed(command)
    print(f"\n| extraction of {images} images (CPU) | images/s |")
    print("| --- | ---: |")
    print(f"| featstore extract --model arcface | {images / seconds:.1f} |")
    if seed_repo is None:
        print("(the seed's script: pass --seed-repo PATH, a checkout of Jasolicon/face000)")
        return
    script = seed_repo / "train_transformer3D" / "extract_and_align_3d_data.py"
    env = {**os.environ, "HOME": str(home)}
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            str(script),
            "--face_dir",
            "face",
            "--video_dir",
            "video",
            "--output_dir",
            str(work / "seed_out"),
            "--use_cpu",
        ],
        cwd=tree,
        env=env,
        check=True,
        capture_output=True,
    )
    rate = images / (time.perf_counter() - started)
    print(f"| the seed's extract_and_align_3d_data.py | {rate:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="10,000 and 100,000 frames")
    parser.add_argument("--seed-repo", type=Path, help="a checkout of Jasolicon/face000")
    parser.add_argument("--identities", type=int, help="extraction tree [10; full: 20]")
    parser.add_argument("--frames", type=int, help="frames an identity [4; full: 10]")
    args = parser.parse_args()
    args.identities = args.identities or (20 if args.full else 10)
    args.frames = args.frames or (10 if args.full else 4)
    sizes = [10_000, 100_000] if args.full else [2_000, 10_000]
    work = Path(tempfile.mkdtemp(prefix="featstore-bench-npy-"))
    try:
        part_npy(work, sizes)
        part_extract(work, args.identities, args.frames, args.seed_repo)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
