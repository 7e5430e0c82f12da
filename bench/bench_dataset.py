"""FeatureDataset figures (issue: the training Dataset), against baselines of the same run.

    .venv/bin/python bench/bench_dataset.py [--identities 1000] [--frames 100] [--dim 768]

One store of identities x frames samples (random features, written by bench_store's
generator), its `export-json` file, and the same input features as a `.npy` file. Each
source is then read in a fresh process that times: constructing the Dataset and reaching
the first sample, a full pass of `dataset[i]`, and full passes through
`DataLoader(batch_size=128, shuffle=True)` with 0 and 2 (forked, persistent) workers, best
of 3 passes. It reports the peak RSS of the process and the summed PSS of the process and
its workers (shared pages counted once, split between the processes mapping them) during
the 2-worker passes.

    (a) the store through FeatureDataset (cold: building its cache; warm: mapping it)
    (b) the JSON read the seed's way: json.load, per-sample numpy arrays, default collate
    (c) the JSON through FeatureDataset (cold and warm, like (a))
    (d) np.load(mmap_mode="r") of the input features, batches gathered by index: the limit
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).parent))
from bench_store import build_store  # noqa: E402

BATCH = 128
REPEATS = 3


class SeedJsonDataset(Dataset[dict[str, Any]]):
    """How the seed's trainer read the JSON: the whole file, then one dict per sample."""

    def __init__(self, path: Path) -> None:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        self.samples = []
        for person, entry in data.items():
            target = np.array(entry["face_features"], dtype=np.float32)
            for frame in entry["video_data"]:
                self.samples.append(
                    {
                        "input": np.array(frame["features"], dtype=np.float32),
                        "angles": np.array(frame["spherical_angles"], dtype=np.float32),
                        "target": target,
                        "person": person,
                    }
                )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        frame, target = torch.from_numpy(sample["input"]), torch.from_numpy(sample["target"])
        return {
            "input_features": frame,
            "position_encoding": torch.from_numpy(sample["angles"]),
            "target_features": target,
            "target_residual": target - frame,
            "person_name": sample["person"],
        }


class NpyDataset(Dataset[torch.Tensor]):
    """The physical limit: one memory-mapped float32 matrix, batches gathered by index."""

    def __init__(self, path: Path) -> None:
        self.features = np.load(path, mmap_mode="r")

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(np.array(self.features[index]))

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        return torch.from_numpy(np.take(self.features, indices, axis=0))


def keep_batch(batch: Any) -> Any:
    return batch


class PssSampler:
    """The largest summed PSS of this process and its children, sampled every 50 ms."""

    def __init__(self) -> None:
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            pids = [os.getpid(), *_children(os.getpid())]
            self.peak_mib = max(self.peak_mib, sum(_pss_kib(p) for p in pids) / 1024)


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _peak_rss_mib() -> float:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the parent (which built
    # the store), while VmHWM belongs to this process's own memory. Mapped file pages that
    # were read count too, as in any RSS.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def probe(kind: str, path: Path, cache: Path) -> dict[str, float]:
    """Figures for one source, in this (fresh) process."""
    import featstore

    started = time.perf_counter()
    dataset: Any
    collate: Any = None
    if kind == "seed-json":
        dataset = SeedJsonDataset(path)
    elif kind == "npy":
        dataset, collate = NpyDataset(path), keep_batch
    else:
        dataset, collate = featstore.FeatureDataset(path, cache_dir=cache), featstore.collate
    dataset[0]
    figures = {"construct_s": time.perf_counter() - started, "samples": len(dataset)}

    started = time.perf_counter()
    for i in range(len(dataset)):
        dataset[i]
    figures["getitem_per_s"] = len(dataset) / (time.perf_counter() - started)

    for workers in (0, 2):
        loader = DataLoader(
            dataset,
            batch_size=BATCH,
            shuffle=True,
            generator=torch.Generator().manual_seed(0),
            num_workers=workers,
            persistent_workers=workers > 0,
            collate_fn=collate,
        )
        # Best of REPEATS passes: the machines are shared, and noise only ever slows down.
        best = float("inf")
        with PssSampler() as pss:
            for _ in range(REPEATS):
                started = time.perf_counter()
                for _batch in loader:
                    pass
                best = min(best, time.perf_counter() - started)
        figures[f"loader{workers}_per_s"] = len(dataset) / best
        if workers:
            figures["pss_2_workers_mib"] = pss.peak_mib
    figures["peak_rss_mib"] = _peak_rss_mib()
    return figures


def run_probe(kind: str, path: Path, cache: Path) -> dict[str, float]:
    command = [
        sys.executable,
        __file__,
        "--probe",
        kind,
        "--path",
        str(path),
        "--cache",
        str(cache),
    ]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"probe {kind} failed:\n{out.stderr}")
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        print(json.dumps(probe(args.probe, args.path, args.cache)))
        return

    import featstore
    from featstore.trainer_json.export import export_json

    work = Path(tempfile.mkdtemp(prefix="featstore-bench-dataset-"))
    try:
        store, exported, npy, cache = (
            work / "store",
            work / "valid_images.json",
            work / "features.npy",
            work / "cache",
        )
        started = time.perf_counter()
        build_store(store, args.identities, args.frames, args.dim)
        export_json(store, out=exported)
        # The same input features as the Dataset serves them, for the physical limit.
        reference = featstore.FeatureDataset(store, cache_dir=work / "reference-cache")
        np.save(npy, reference.__getitems__(range(len(reference)))["input_features"].numpy())
        del reference
        shutil.rmtree(work / "reference-cache")
        print(
            f"{args.identities} identities x {args.frames} frames x {args.dim} dims: store "
            f"{_size_mib(store):.0f} MiB, JSON {_size_mib(exported):.0f} MiB, npy "
            f"{_size_mib(npy):.0f} MiB (built in {time.perf_counter() - started:.0f} s)\n"
        )
        runs = {
            "(a) store, cold": ("featstore", store),
            "(a) store, warm": ("featstore", store),
            "(b) JSON, seed's way": ("seed-json", exported),
            "(c) JSON via FeatureDataset, cold": ("featstore", exported),
            "(c) JSON via FeatureDataset, warm": ("featstore", exported),
            "(d) np.load mmap": ("npy", npy),
        }
        results = {name: run_probe(kind, path, cache) for name, (kind, path) in runs.items()}
        _report(results)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _size_mib(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20


def _report(results: dict[str, dict[str, float]]) -> None:
    header = (
        f"{'source':36} {'construct':>10} {'dataset[i]':>11} {'loader 0w':>10} "
        f"{'loader 2w':>10} {'peak RSS':>9} {'PSS 2w':>8}"
    )
    print(header + "\n" + "-" * len(header))
    for name, f in results.items():
        print(
            f"{name:36} {f['construct_s']:9.3f}s {f['getitem_per_s']:9.0f}/s "
            f"{f['loader0_per_s']:8.0f}/s {f['loader2_per_s']:8.0f}/s "
            f"{f['peak_rss_mib']:6.0f}MiB {f['pss_2_workers_mib']:5.0f}MiB"
        )
    a, a_cold = results["(a) store, warm"], results["(a) store, cold"]
    b, d = results["(b) JSON, seed's way"], results["(d) np.load mmap"]
    print("\ngoals (same run):")
    print(
        f"  (a) constructs {b['construct_s'] / a['construct_s']:.0f}x faster than (b) warm, "
        f"{b['construct_s'] / a_cold['construct_s']:.1f}x cold   (goal >= 50x)"
    )
    for workers in (0, 2):
        ratio = a[f"loader{workers}_per_s"] / d[f"loader{workers}_per_s"]
        print(f"  (a) batched throughput, {workers} workers: {ratio:.0%} of (d)   (goal >= 50%)")
    print(
        f"  (a) peak RSS {a['peak_rss_mib'] / b['peak_rss_mib']:.0%} of (b) warm, "
        f"{a_cold['peak_rss_mib'] / b['peak_rss_mib']:.0%} cold   (goal <= 25%)"
    )
    print(
        f"  with 2 workers, summed PSS: (a) {a['pss_2_workers_mib']:.0f} MiB, "
        f"(b) {b['pss_2_workers_mib']:.0f} MiB"
    )


if __name__ == "__main__":
    main()
