"""FeatureDataset figures (issue: the training Dataset), against baselines of the same run.

    .venv/bin/python bench/bench_dataset.py [--full] [--identities N] [--frames N] [--dim 768]

Quick by default (small sizes, a minute or two); `--full` runs the sizes of the issues:
a 1000 x 100 store and seed-format JSON files of ~250 MB and ~1 GB (minutes, ~5 GB RAM
for the seed's json.load of the large file).

Part 1, the trainer's JSON (seed format: `json.dump(..., indent=2)` of float32 values, as
the seed's script writes it), two sizes, each case in a fresh process that imports torch:
the seed's way (json.load + per-sample arrays), `FeatureDataset(json)` the first time
(streamed into its cache), `featstore import-json`, and `json.load` alone; time and peak
RSS (VmHWM), and `dataset[i]` per item.

Part 2, the store:
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
        of a batch of inputs only (a third of (a)'s work)
    (e) the fair limit: (a)'s batch (input, target, residual, positions, names) built by
        plain numpy from memory-mapped .npy arrays (goal: (a) >= 0.9 of it, 0 workers)
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
    """The seed's trainer reading the JSON (train_transformer/dataset.py), kept lean: the
    whole file with json.load, then one dict of float32 arrays per sample (the seed's
    np.array made float64 ones, twice the memory). `__getitem__` is the seed's: the
    residual in numpy, then `torch.FloatTensor` of each array (fresh copies)."""

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
        frame, target = sample["input"], sample["target"]
        return {
            "input_features": torch.FloatTensor(frame),
            "position_encoding": torch.FloatTensor(sample["angles"]),
            "target_features": torch.FloatTensor(target),
            "target_residual": torch.FloatTensor(target - frame),
            "person_name": sample["person"],
        }


class SharedSeedJsonDataset(SeedJsonDataset):
    """The seed's samples served as views (`torch.from_numpy`, no copies): quicker than
    the seed's `__getitem__`, and what a sample costs at the least (but a write into one
    changes the dataset)."""

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


class FairNpyDataset(Dataset[dict[str, Any]]):
    """The fair limit: featstore's batch built by plain numpy from memory-mapped arrays.

    The same work as `FeatureDataset.__getitems__`: the identity of each row, three B x D
    gathers' worth (input, target, and the residual target - input), the positions, the
    names; from `.npy` files mapped read-only (what the Dataset's cache is, minus its
    bookkeeping). (d) gathers the input rows only, a third of the work.
    """

    def __init__(self, folder: Path) -> None:
        def load(name: str) -> Any:
            return np.load(folder / f"{name}.npy", mmap_mode="r")

        self.inputs, self.targets = load("input_features"), load("target_features")
        self.positions, self.identity_index = load("position_encoding"), load("identity_index")
        self.names = np.load(folder / "names.npy")

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])

    def __getitems__(self, indices: list[int]) -> dict[str, Any]:
        rows = np.asarray(indices, dtype=np.int64)
        who = np.take(self.identity_index, rows)
        size, dim = len(rows), self.inputs.shape[1]
        frames = np.empty((size, dim), np.float32)
        targets = np.empty((size, dim), np.float32)
        np.take(self.inputs, rows, axis=0, out=frames, mode="clip")
        np.take(self.targets, who, axis=0, out=targets, mode="clip")
        return {
            "input_features": torch.from_numpy(frames),
            "position_encoding": torch.from_numpy(np.take(self.positions, rows, axis=0)),
            "target_features": torch.from_numpy(targets),
            "target_residual": torch.from_numpy(targets - frames),
            "person_name": np.take(self.names, who).tolist(),
        }


def save_fair_arrays(dataset: Any, folder: Path) -> None:
    """The arrays `FairNpyDataset` maps, taken from a FeatureDataset (same values)."""
    folder.mkdir(parents=True, exist_ok=True)
    columns = dataset._open()
    np.save(folder / "input_features.npy", np.asarray(columns.input_features))
    np.save(folder / "target_features.npy", np.asarray(columns.target_features))
    np.save(folder / "position_encoding.npy", np.asarray(columns.fields[dataset._encoding]))
    np.save(folder / "identity_index.npy", np.asarray(columns.identity_index))
    np.save(folder / "names.npy", np.array(columns.identities, dtype=str))


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


def write_seed_json(path: Path, identities: int, frames: int = 50, dim: int = 768) -> None:
    """A new-format file as the seed's script writes it (json.dump, indent=2), streamed."""
    rng = np.random.default_rng(0)

    def floats(*shape: int) -> Any:
        return rng.standard_normal(shape).astype(np.float32).tolist()

    with open(path, "w", encoding="utf-8") as out:
        out.write("{\n")
        for i in range(identities):
            name = f"person_{i:05d}"
            video = [
                {
                    "image_path": f"videos/{name}/{j:04d}.jpg",
                    "features": floats(dim),
                    "landmarks_2d": floats(5, 2),
                    "landmarks_3d": floats(5, 3),
                    "box": floats(4),
                    "spherical_angles": floats(5),
                    "avg_angle": floats(1)[0],
                }
                for j in range(frames)
            ]
            entry = {
                "face_image_path": f"faces/{name}.jpg",
                "face_features": floats(dim),
                "face_landmarks_2d": floats(5, 2),
                "face_landmarks_3d": floats(5, 3),
                "face_box": floats(4),
                "video_data": video,
                "total_video_images": frames,
                "valid_video_images": frames,
                "feature_dim": dim,
                "dinov2_model": "dinov2_vitb14",
            }
            # The member exactly as json.dump(whole, indent=2) lays it out.
            text = json.dumps({name: entry}, indent=2, ensure_ascii=False)[2:-2]
            out.write(("" if i == 0 else ",\n") + text)
        out.write("\n}")


def _per_item_us(dataset: Any, count: int = 20_000) -> float:
    count = min(count, len(dataset))
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        for i in range(count):
            dataset[i]
        best = min(best, time.perf_counter() - started)
    return best / count * 1e6


def json_probe(kind: str, path: Path, work: Path) -> dict[str, float]:
    """One JSON case, in this fresh process (torch imported first, as a trainer does)."""
    import featstore  # noqa: F401  (imports torch)

    started = time.perf_counter()
    figures: dict[str, float] = {}
    if kind == "seed":
        dataset: Any = SeedJsonDataset(path)
    elif kind == "first":
        dataset = featstore.FeatureDataset(path, cache_dir=work / "cache")
    elif kind == "import":
        from featstore.trainer_json.importer import import_json

        import_json(path, store=work / "store")
    else:  # json.load alone
        with open(path, encoding="utf-8") as handle:
            json.load(handle)
    figures["seconds"] = time.perf_counter() - started
    figures["peak_rss_mib"] = _peak_rss_mib()
    if kind in ("seed", "first"):
        figures["getitem_us"] = _per_item_us(dataset)
    if kind == "seed":
        dataset.__class__ = SharedSeedJsonDataset  # the same samples, served as views
        figures["getitem_views_us"] = _per_item_us(dataset)
    return figures


def json_part(work: Path, sizes: dict[str, int]) -> None:
    """Part 1: the seed's JSON, read the seed's way and featstore's, at two sizes."""
    results: dict[str, dict[str, dict[str, float]]] = {}
    for label, identities in sizes.items():
        path = work / f"valid_images_{label}.json"
        write_seed_json(path, identities)
        mib = path.stat().st_size / 2**20
        results[label] = {"size": {"mib": mib, "identities": identities}}
        for kind in ("seed", "first", "import", "json.load"):
            folder = work / f"{label}-{kind}"
            folder.mkdir()
            command = [sys.executable, __file__, "--json-probe", kind, "--path", str(path)]
            out = subprocess.run([*command, "--cache", str(folder)], capture_output=True, text=True)
            if out.returncode != 0:
                raise RuntimeError(f"json probe {kind} failed:\n{out.stderr}")
            results[label][kind] = json.loads(out.stdout.strip().splitlines()[-1])
            shutil.rmtree(folder)
        path.unlink()
    header = f"{'seed-format JSON':34} {'time':>8} {'MB/s':>6} {'peak RSS':>10} {'dataset[i]':>11}"
    print(header + "\n" + "-" * len(header))
    names = {
        "seed": "the seed's way (json.load + arrays)",
        "first": "FeatureDataset(json), first time",
        "import": "featstore import-json",
        "json.load": "json.load alone",
    }
    for cases in results.values():
        size = cases["size"]
        print(f"{size['mib']:.0f} MiB ({size['identities']:.0f} identities x 50 frames x 768):")
        for kind, name in names.items():
            f = cases[kind]
            item = f"{f['getitem_us']:8.2f} us" if "getitem_us" in f else ""
            rate = size["mib"] / f["seconds"]
            print(
                f"  {name:32} {f['seconds']:7.2f}s {rate:6.0f} {f['peak_rss_mib']:7.0f} MiB"
                f" {item:>11}"
            )
    print("\ngoals (same run):")
    small, large = results
    for label, cases in results.items():
        seed, first, load = cases["seed"], cases["first"], cases["json.load"]
        print(
            f"  {label}: first construction {first['seconds'] / seed['seconds']:.2f}x the seed's"
            f" time (goal <= 0.5), {first['peak_rss_mib'] / seed['peak_rss_mib']:.2f}x its peak"
            f" RSS (goal <= 0.6); import-json {cases['import']['seconds'] / load['seconds']:.2f}x"
            " json.load's time (goal <= 1)"
        )
    for kind in ("first", "import"):
        ratio = results[large][kind]["peak_rss_mib"] / results[small][kind]["peak_rss_mib"]
        print(f"  peak RSS of {names[kind]}, {large} / {small}: {ratio:.2f}x (goal <= 1.3)")
    for label, cases in results.items():
        item, seed = cases["first"]["getitem_us"], cases["seed"]
        print(
            f"  {label}: dataset[i] {item:.2f} us, {item / seed['getitem_us']:.2f}x the seed's"
            " __getitem__ (goal <= 1; fresh copies, as the seed's), "
            f"{item / seed['getitem_views_us']:.2f}x the seed's samples served as views"
        )
    print()


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
    elif kind == "fair-npy":
        dataset, collate = FairNpyDataset(path), keep_batch
    else:
        dataset, collate = featstore.FeatureDataset(path, cache_dir=cache), featstore.collate
    dataset[0]
    figures = {"construct_s": time.perf_counter() - started, "samples": len(dataset)}

    started = time.perf_counter()
    for i in range(len(dataset)):
        dataset[i]
    figures["getitem_per_s"] = len(dataset) / (time.perf_counter() - started)

    if kind == "featstore":  # torch's default collate vs collate_fn=featstore.collate
        best = {}
        for name, function in (("default", None), ("collate_fn", featstore.collate)):
            loader = DataLoader(
                dataset,
                batch_size=BATCH,
                shuffle=True,
                generator=torch.Generator().manual_seed(0),
                collate_fn=function,
            )
            best[name] = float("inf")
            for _ in range(REPEATS):
                started = time.perf_counter()
                for _batch in loader:
                    pass
                best[name] = min(best[name], time.perf_counter() - started)
        figures["default_collate_ratio"] = best["collate_fn"] / best["default"]

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
    parser.add_argument("--full", action="store_true", help="the issues' sizes (minutes)")
    parser.add_argument("--identities", type=int, help="store part (default 200, full 1000)")
    parser.add_argument("--frames", type=int, help="store part (default 50, full 100)")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--only", choices=("json", "store"), help="run one part")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    parser.add_argument("--json-probe", help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        print(json.dumps(probe(args.probe, args.path, args.cache)))
        return
    if args.json_probe:
        print(json.dumps(json_probe(args.json_probe, args.path, args.cache)))
        return
    args.identities = args.identities or (1000 if args.full else 200)
    args.frames = args.frames or (100 if args.full else 50)
    # ~1.3 MB per identity of 50 frames: ~250 MB and ~1 GB, or ~25 MB and ~100 MB.
    sizes = {"250MB": 195, "1GB": 780} if args.full else {"25MB": 20, "100MB": 80}
    if args.only != "store":
        json_work = Path(tempfile.mkdtemp(prefix="featstore-bench-json-"))
        try:
            json_part(json_work, sizes)
        finally:
            shutil.rmtree(json_work, ignore_errors=True)
    if args.only == "json":
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
        save_fair_arrays(reference, work / "fair")
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
            "(e) same batch, numpy mmap": ("fair-npy", work / "fair"),
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
    e = results["(e) same batch, numpy mmap"]
    for workers in (0, 2):
        ratio = a[f"loader{workers}_per_s"] / d[f"loader{workers}_per_s"]
        fair = a[f"loader{workers}_per_s"] / e[f"loader{workers}_per_s"]
        goal = "   (goal >= 90%)" if workers == 0 else ""
        print(
            f"  (a) batched throughput, {workers} workers: {fair:.0%} of the fair limit (e)"
            f"{goal}; {ratio:.0%} of the input-only (d)"
        )
    print(
        f"  (a) peak RSS {a['peak_rss_mib'] / b['peak_rss_mib']:.0%} of (b) warm, "
        f"{a_cold['peak_rss_mib'] / b['peak_rss_mib']:.0%} cold   (goal <= 25%)"
    )
    print(
        f"  with 2 workers, summed PSS: (a) {a['pss_2_workers_mib']:.0f} MiB, "
        f"(b) {b['pss_2_workers_mib']:.0f} MiB"
    )
    print(
        f"  torch's default collate: {a['default_collate_ratio']:.2f}x the speed of "
        "collate_fn=featstore.collate   (goal >= 0.8)"
    )
    print(
        f"  dataset[i]: {1e6 / a['getitem_per_s']:.1f} us per item, the seed's __getitem__ "
        f"{1e6 / b['getitem_per_s']:.1f} us   (goal: no slower)"
    )


if __name__ == "__main__":
    main()
