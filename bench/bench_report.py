"""`featstore report` on a large store: time and file size (issue: report).

    .venv/bin/python bench/bench_report.py [--identities 1000] [--frames 100] [--dim 768]

Builds the store of `bench_store.py` (random unit features, written through the library's
row and partition writers; its images do not exist, so the gallery shows placeholders),
then runs `featstore report` in a fresh process. Goals: under 30 s and under 20 MB for
100,000 frames. Then adds an ArcFace model (`arcface_buffalo_l`, 512 dims, each identity's
embeddings around its own direction: cosines to the frontal image of ~0.5-0.9) and runs the
report again, with its identity-consistency section.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from bench_store import FEATSTORE, MODEL, build_store, build_store_verbose, timed

GOAL_SECONDS = 30
GOAL_MB = 20
ARCFACE = "arcface_buffalo_l"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--identities", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--dim", type=int, default=768)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="featstore-bench-report-"))
    try:
        store = work / "store"
        build_store_verbose(store, args.identities, args.frames, args.dim)
        out = work / "report.html"
        seconds, rss, _ = timed([*FEATSTORE, "report", "--store", str(store), "--out", str(out)])
        size_mb = out.stat().st_size / 1e6
        print(
            f"featstore report: {seconds:.1f} s (goal < {GOAL_SECONDS} s; whole process), "
            f"{size_mb:.2f} MB (goal < {GOAL_MB} MB), peak RSS {rss:.0f} MiB"
        )
        build_store(store, args.identities, args.frames, 512, 1, model=ARCFACE, spread=0.8)
        command = [*FEATSTORE, "report", "--store", str(store), "--out", str(out)]
        seconds, rss, _ = timed([*command, "--model", MODEL])
        print(
            f"  with {ARCFACE} added (identity-consistency section): {seconds:.1f} s, "
            f"{out.stat().st_size / 1e6:.2f} MB, peak RSS {rss:.0f} MiB"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
