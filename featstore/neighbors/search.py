"""k nearest neighbours by cosine over unit vectors, with faiss.

Exact while the base is small enough (`EXACT_LIMIT` vectors): a flat inner-product index
(`faiss.IndexFlatIP`, a BLAS matrix product per block of queries), queried `BLOCK` rows at
a time so the result arrays stay small. Beyond it an inverted-file index
(`faiss.IndexIVFFlat`, inner product): its `nprobe` (how many of the `nlist` cells a
query scans) starts small and is doubled until the top-K recall against exact search, on
a sample of queries searched both ways, reaches `target_recall`; the recall reported is
then measured again on a second, held-out sample. When the sample's IVF search has become
as slow as its exact search before reaching the target, more cells cannot pay and the
search is exact (the method says so, with the recall that was reached): on structureless
vectors (uniform on the sphere) that is what happens, on clustered ones IVF pays.

With `min_cosine` (the image search, which exists to find copies) the recall tuned and
reported is that of copies: each sampled image is turned in a random direction to exactly
`min_cosine` from itself (the hardest copy the threshold still accepts), searched, and
counted found when its original is among the index's top K. Real copies are rare (60 in
10^6 images in the bench), so a sample of real neighbours at or above the threshold
usually holds none and could not tune anything: the first version did that, stayed at a
fixed nprobe of 8 and missed one planted copy in 60 at 10^6 images. Near-copies fall in
the same cell as their original, so a few cells find them where the whole top-K of
512-dimensional vectors would need most cells (on structureless data IVF's top-K recall
stays far below exact's at any useful nprobe; bench/bench_neighbors.py measures both).

Why IVF and not HNSW here: HNSW's graph takes minutes to build over 10^6 vectors of 512
dimensions on two cores and holds the vectors plus 2 x M links each; IVF trains k-means
on a sample (seconds) and its recall is tuned at search time by one number.

Why not only the upper triangle when a set is searched against itself (half the
products): measured in bench/bench_neighbors.py (mode `symmetric`), the blocks' transposed
copies and a second heap pass over every product cost more than the halved sgemm saves,
on this machine's BLAS; the flat index stays.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

EXACT_LIMIT = 200_000  # vectors: 10^5 x 10^5 x 512 is about a minute on two cores
BLOCK = 8192  # queries per faiss call
RECALL_SAMPLE = 1000  # queries searched both ways to measure an approximate index
TARGET_RECALL = 0.99
# Copies: at most 1 in 1,000 copies at the threshold itself missed (copies above it, as
# real re-saved images are, are found more often still). 0.99 left one planted copy of
# 200 at cosine 0.955 unfound in tests/neighbors/test_search.py's case.
TARGET_COPY_RECALL = 0.999
_TRAIN_PER_CELL = 40  # k-means sample: 40 vectors per cell (faiss warns below 39)


@dataclass(frozen=True)
class Method:
    """How a search was made, for the table's settings and the command's output."""

    name: str  # "exact" | "ivf"
    nlist: int = 0
    nprobe: int = 0
    recall: float | None = None  # measured on a sample (ivf, and exact after a fallback)
    sample: int = 0
    min_cosine: float | None = None  # the recall is that of copies at this cosine
    note: str = ""  # why exact was used where approximate was asked for

    def describe(self) -> str:
        if self.name == "exact":
            return "exact (flat inner product)" + (f": {self.note}" if self.note else "")
        if self.min_cosine is None:
            measured = (
                f"top-K recall {self.recall:.4f} against exact on {self.sample} sampled queries"
            )
        else:
            measured = (
                f"recall {self.recall:.4f} of copies at cosine {self.min_cosine:g} (each of "
                f"{self.sample} sampled images turned to it, its original searched for)"
            )
        return f"approximate (IVF, {self.nlist} cells, nprobe {self.nprobe}): {measured}"


class Searcher:
    """Nearest neighbours of queries among `base` (float32 unit rows, C-contiguous).

    Args:
        base: the vectors searched.
        k_hint: the K the caller will ask for (the recall is measured at it).
        exact_limit: above this many base vectors, search approximately.
        target_recall: the recall the approximate search is tuned to (default
            `TARGET_RECALL`, or `TARGET_COPY_RECALL` with `min_cosine`).
        min_cosine: tune on copies at this cosine (the copy threshold), not on top-K.
        seed: the recall sample and k-means start.
    """

    def __init__(
        self,
        base: NDArray[np.float32],
        *,
        k_hint: int,
        exact_limit: int = EXACT_LIMIT,
        target_recall: float | None = None,
        min_cosine: float | None = None,
        seed: int = 0,
    ) -> None:
        import faiss

        self.base = np.ascontiguousarray(base, dtype=np.float32)
        n, dim = self.base.shape
        self.method = Method("exact")
        if target_recall is None:
            target_recall = TARGET_RECALL if min_cosine is None else TARGET_COPY_RECALL
        if n > exact_limit:
            self.index = self._build_ivf(k_hint, target_recall, min_cosine, seed)
        else:
            self.index = faiss.IndexFlatIP(dim)
            self.index.add(self.base)

    @property
    def size(self) -> int:
        return int(self.base.shape[0])

    def search(self, queries: NDArray[np.float32], k: int) -> tuple[NDArray, NDArray]:
        """(cosines, ids) of the `k` nearest base rows of each query, nearest first;
        id -1 (cosine -inf) where fewer were found."""
        k = min(k, self.size)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        sims = np.empty((len(queries), k), np.float32)
        ids = np.empty((len(queries), k), np.int64)
        for start in range(0, len(queries), BLOCK):
            stop = start + BLOCK
            sims[start:stop], ids[start:stop] = self.index.search(queries[start:stop], k)
        return sims, ids

    def _build_ivf(self, k: int, target: float, min_cosine: float | None, seed: int) -> Any:
        """An IVF index whose nprobe reaches `target` recall on a tuning sample, checked on a
        second (held-out) sample; a flat index when reaching it costs as much as exact."""
        import faiss

        n, dim = self.base.shape
        # sqrt(n) cells (faiss's rule of thumb is 4 to 16 sqrt(n) for speed; fewer, larger
        # cells keep recall up at a small nprobe), with enough points each to train.
        nlist = int(max(1, min(65536, math.sqrt(n), n // _TRAIN_PER_CELL)))
        rng = np.random.default_rng(seed)
        train = self.base[np.sort(rng.choice(n, min(n, _TRAIN_PER_CELL * nlist), replace=False))]
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = 10  # enough for cells that only need to split the space
        index.cp.seed = seed
        index.train(train)
        index.add(self.base)
        # Two disjoint samples: nprobe is tuned on the first, the recall printed is the
        # second's (a setting tuned on a sample measures optimistically on that sample).
        picked = rng.choice(n, min(n, 2 * RECALL_SAMPLE), replace=False)
        halves = np.sort(picked[: len(picked) // 2 or 1]), np.sort(picked[len(picked) // 2 :])
        if min_cosine is None:
            tune, held = (_Sample(self.base, rows, k) for rows in halves)
        else:
            tune, held = (_CopySample(self.base, rows, k, min_cosine, rng) for rows in halves)
        nprobe = 1
        while True:
            index.nprobe = nprobe
            recall, seconds = tune.recall(index)
            if recall >= target:
                break
            # IVF scans its cells without BLAS: once a sample costs what exact search of it
            # cost, more cells cannot pay; exact it is.
            if seconds >= tune.exact_seconds or nprobe >= nlist:
                return self._exact_instead(nlist, nprobe, recall, tune, target)
            nprobe = min(nlist, nprobe * 2)
        checked, _ = held.recall(index) if held.size else (recall, 0.0)
        self.method = Method("ivf", nlist, nprobe, checked, held.size or tune.size, min_cosine)
        return index

    def _exact_instead(
        self, nlist: int, nprobe: int, recall: float, tune: _Sample | _CopySample, target: float
    ) -> Any:
        import faiss

        self.method = Method(
            "exact",
            nlist,
            nprobe,
            recall,
            tune.size,
            tune.min_cosine,
            note=f"approximate (IVF) reached {tune.what} recall {recall:.4f} < {target:g} at "
            f"nprobe {nprobe} of {nlist} cells, as slow as exact on {tune.size} sampled queries",
        )
        index = faiss.IndexFlatIP(self.base.shape[1])
        index.add(self.base)
        return index


class _Sample:
    """Queries taken from the base, answered exactly (themselves excluded: a query finds
    itself in any cell it is in, which would inflate the recall), and timed."""

    what = "top-K"

    def __init__(self, base: NDArray[np.float32], rows: NDArray[np.int64], k: int) -> None:
        import faiss

        self.queries, self.k, self.size = base[rows], k, len(rows)
        self.min_cosine: float | None = None
        started = time.perf_counter()
        _, truth = faiss.knn(self.queries, base, k, metric=faiss.METRIC_INNER_PRODUCT)
        self.exact_seconds = time.perf_counter() - started
        self.truth = np.where(truth == rows[:, None], -1, truth)

    def recall(self, index: Any) -> tuple[float, float]:
        """(top-K recall, seconds) of `index` on the sample at its current setting."""
        started = time.perf_counter()
        _, found = index.search(self.queries, self.k)
        return top_k_recall(found, self.truth), time.perf_counter() - started


class _CopySample(_Sample):
    """Copies made of sampled base rows, each turned in a random direction (orthogonal to
    it) to exactly `min_cosine` from its original; the truth of each is its original.
    Exact search of the copies is timed, for the as-slow-as-exact rule."""

    def __init__(
        self,
        base: NDArray[np.float32],
        rows: NDArray[np.int64],
        k: int,
        min_cosine: float,
        rng: np.random.Generator,
    ) -> None:
        import faiss

        originals = base[rows].astype(np.float64)
        away = rng.standard_normal(originals.shape)
        away -= np.sum(away * originals, axis=1, keepdims=True) * originals
        away /= np.linalg.norm(away, axis=1, keepdims=True)
        copies = min_cosine * originals + math.sqrt(max(0.0, 1 - min_cosine**2)) * away
        self.queries = np.ascontiguousarray(copies, dtype=np.float32)
        self.k, self.min_cosine, self.size = k, min_cosine, len(rows)
        self.what = f"copies at cosine {min_cosine:g}"
        started = time.perf_counter()
        faiss.knn(self.queries, base, k, metric=faiss.METRIC_INNER_PRODUCT)
        self.exact_seconds = time.perf_counter() - started
        self.truth = rows[:, None].astype(np.int64)


def top_k_recall(found: NDArray[np.int64], truth: NDArray[np.int64]) -> float:
    """Share of the exact top-K ids that the approximate search found (per row, summed)."""
    hits = total = 0
    for row_found, row_truth in zip(found, truth, strict=True):
        wanted = row_truth[row_truth >= 0]
        hits += len(np.intersect1d(row_found, wanted))
        total += len(wanted)
    return hits / total if total else 1.0
