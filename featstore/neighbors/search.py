"""k nearest neighbours by cosine over unit vectors, with faiss.

Exact while the base is small enough (`EXACT_LIMIT` vectors): a flat inner-product index
(`faiss.IndexFlatIP`, a BLAS matrix product per block of queries), queried `BLOCK` rows at
a time so the result arrays stay small. Beyond it an inverted-file index
(`faiss.IndexIVFFlat`, inner product): its `nprobe` (how many of the `nlist` cells a
query scans) starts small and is doubled until the top-K recall against exact search, on
a sample of queries searched both ways, reaches `target_recall` or the scan stops paying
(`MAX_PROBE_SHARE` of the cells). The recall reached is part of the result: the command
prints it, the bench reports it.

With `min_cosine` (the image search, which exists to find copies) the recall is measured
on the exact neighbours at or above it only: near-copies fall in the same cell as their
original, so a few cells find them where the whole top-K of 512-dimensional vectors would
need most cells (on structureless data IVF's top-K recall stays far below exact's at any
useful nprobe; bench/bench_neighbors.py measures both).

Why IVF and not HNSW here: HNSW's graph takes minutes to build over 10^6 vectors of 512
dimensions on two cores and holds the vectors plus 2 x M links each; IVF trains k-means
on a sample (seconds) and its recall is tuned at search time by one number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

EXACT_LIMIT = 200_000  # vectors: 10^5 x 10^5 x 512 is about a minute on two cores
BLOCK = 8192  # queries per faiss call
RECALL_SAMPLE = 1000  # queries searched both ways to measure an approximate index
TARGET_RECALL = 0.99
MAX_PROBE_SHARE = 1 / 32  # IVF scans without BLAS: past ~1/5 of the cells it is slower than flat
_UNMEASURED_PROBE = 8
_MIN_MEASURED = 100  # sampled neighbours below which a measured recall is not trusted alone
_TRAIN_PER_CELL = 40  # k-means sample: 40 vectors per cell (faiss warns below 39)


@dataclass(frozen=True)
class Method:
    """How a search was made, for the table's settings and the command's output."""

    name: str  # "exact" | "ivf"
    nlist: int = 0
    nprobe: int = 0
    recall: float | None = None  # top-K recall against exact on a sample (ivf only)
    sample: int = 0
    min_cosine: float | None = None  # recall counted over neighbours at or above it

    def describe(self) -> str:
        if self.name == "exact":
            return "exact (flat inner product)"
        which = "top-K" if self.min_cosine is None else f"top-K at cosine >= {self.min_cosine:g}"
        measured = (
            f"{which} recall {self.recall:.4f} against exact on {self.sample} sampled queries"
            if self.recall is not None
            else f"recall not measured: no neighbour at cosine >= {self.min_cosine:g} among "
            f"{self.sample} sampled queries"
        )
        return f"approximate (IVF, {self.nlist} cells, nprobe {self.nprobe}): {measured}"


class Searcher:
    """Nearest neighbours of queries among `base` (float32 unit rows, C-contiguous).

    Args:
        base: the vectors searched.
        k_hint: the K the caller will ask for (the recall is measured at it).
        exact_limit: above this many base vectors, search approximately.
        seed: the recall sample and k-means start.
    """

    def __init__(
        self,
        base: NDArray[np.float32],
        *,
        k_hint: int,
        exact_limit: int = EXACT_LIMIT,
        target_recall: float = TARGET_RECALL,
        min_cosine: float | None = None,
        seed: int = 0,
    ) -> None:
        import faiss

        self.base = np.ascontiguousarray(base, dtype=np.float32)
        n, dim = self.base.shape
        self.method = Method("exact")
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
        sample = np.sort(rng.choice(n, min(n, RECALL_SAMPLE), replace=False))
        queries = self.base[sample]
        # Exact answers for the sample without a second copy of the base in an index.
        sims, truth = faiss.knn(queries, self.base, k, metric=faiss.METRIC_INNER_PRODUCT)
        # A query finds itself in any cell it is in: counting it would inflate the recall.
        truth = np.where(truth == sample[:, None], -1, truth)
        if min_cosine is not None:
            truth = np.where(sims >= min_cosine, truth, -1)
        limit = max(min(nlist, _UNMEASURED_PROBE), int(nlist * MAX_PROBE_SHARE))
        if not (truth >= 0).any():  # nothing to measure on: a few cells, recall unknown
            index.nprobe = min(limit, _UNMEASURED_PROBE)
            self.method = Method("ivf", nlist, index.nprobe, None, len(sample), min_cosine)
            return index
        # Few pairs to measure on (copies are rare): start from a few cells, not one.
        measured = int((truth >= 0).sum())
        nprobe, recall = (1 if measured >= _MIN_MEASURED else min(limit, _UNMEASURED_PROBE)), 0.0
        while True:
            index.nprobe = nprobe
            _, found = index.search(queries, k)
            recall = top_k_recall(found, truth)
            if recall >= target or nprobe >= limit:
                break
            nprobe = min(limit, nprobe * 2)
        self.method = Method("ivf", nlist, nprobe, recall, len(sample), min_cosine)
        return index


def top_k_recall(found: NDArray[np.int64], truth: NDArray[np.int64]) -> float:
    """Share of the exact top-K ids that the approximate search found (per row, summed)."""
    hits = total = 0
    for row_found, row_truth in zip(found, truth, strict=True):
        wanted = row_truth[row_truth >= 0]
        hits += len(np.intersect1d(row_found, wanted))
        total += len(wanted)
    return hits / total if total else 1.0
