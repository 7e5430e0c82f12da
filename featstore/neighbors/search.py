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

With `min_cosine` (the image search, which exists to find copies) the recall is measured
on the exact neighbours at or above it only: near-copies fall in the same cell as their
original, so a few cells find them where the whole top-K of 512-dimensional vectors would
need most cells (on structureless data IVF's top-K recall stays far below exact's at any
useful nprobe; bench/bench_neighbors.py measures both).

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
    note: str = ""  # why exact was used where approximate was asked for

    def describe(self) -> str:
        if self.name == "exact":
            return "exact (flat inner product)" + (f": {self.note}" if self.note else "")
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
        tune = _Sample(self.base, np.sort(picked[: len(picked) // 2 or 1]), k, min_cosine)
        held = _Sample(self.base, np.sort(picked[len(picked) // 2 :]), k, min_cosine)
        if not tune.measurable:  # nothing to measure on: a few cells, recall unknown
            index.nprobe = min(nlist, _UNMEASURED_PROBE)
            self.method = Method("ivf", nlist, index.nprobe, None, tune.size, min_cosine)
            return index
        # Few pairs to measure on (copies are rare): start from a few cells, not one.
        nprobe = 1 if tune.measured >= _MIN_MEASURED else min(nlist, _UNMEASURED_PROBE)
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
        checked, _ = held.recall(index) if held.measurable else (recall, 0.0)
        sample = held.size if held.measurable else tune.size
        self.method = Method("ivf", nlist, nprobe, checked, sample, min_cosine)
        return index

    def _exact_instead(
        self, nlist: int, nprobe: int, recall: float, tune: _Sample, target: float
    ) -> Any:
        import faiss

        self.method = Method(
            "exact",
            nlist,
            nprobe,
            recall,
            tune.size,
            tune.min_cosine,
            note=f"approximate (IVF) reached top-K recall {recall:.4f} < {target:g} at nprobe "
            f"{nprobe} of {nlist} cells, as slow as exact on {tune.size} sampled queries",
        )
        index = faiss.IndexFlatIP(self.base.shape[1])
        index.add(self.base)
        return index


class _Sample:
    """Queries taken from the base, answered exactly (themselves excluded: a query finds
    itself in any cell it is in, which would inflate the recall), and timed."""

    def __init__(
        self, base: NDArray[np.float32], rows: NDArray[np.int64], k: int, min_cosine: float | None
    ) -> None:
        import faiss

        self.queries, self.k, self.min_cosine, self.size = base[rows], k, min_cosine, len(rows)
        started = time.perf_counter()
        sims, truth = faiss.knn(self.queries, base, k, metric=faiss.METRIC_INNER_PRODUCT)
        self.exact_seconds = time.perf_counter() - started
        truth = np.where(truth == rows[:, None], -1, truth)
        if min_cosine is not None:
            truth = np.where(sims >= min_cosine, truth, -1)
        self.truth = truth
        self.measured = int((truth >= 0).sum())
        self.measurable = self.measured > 0

    def recall(self, index: Any) -> tuple[float, float]:
        """(top-K recall, seconds) of `index` on the sample at its current setting."""
        started = time.perf_counter()
        _, found = index.search(self.queries, self.k)
        return top_k_recall(found, self.truth), time.perf_counter() - started


def top_k_recall(found: NDArray[np.int64], truth: NDArray[np.int64]) -> float:
    """Share of the exact top-K ids that the approximate search found (per row, summed)."""
    hits = total = 0
    for row_found, row_truth in zip(found, truth, strict=True):
        wanted = row_truth[row_truth >= 0]
        hits += len(np.intersect1d(row_found, wanted))
        total += len(wanted)
    return hits / total if total else 1.0
