"""The faiss search: planted duplicates found, exact vs approximate, unusable vectors."""

from __future__ import annotations

import numpy as np
import pytest

from featstore.neighbors.search import Searcher, top_k_recall
from featstore.neighbors.vectors import unit_rows


def _planted(n: int, dim: int, cosines: list[float], seed: int = 0) -> tuple[np.ndarray, list]:
    """`n` random unit vectors; then one copy per cosine of vector i at that cosine."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, dim)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    copies, pairs = [], []
    for i, c in enumerate(cosines):
        noise = rng.standard_normal(dim)
        noise -= (noise @ base[i]) * base[i]  # orthogonal to the original
        noise /= np.linalg.norm(noise)
        copies.append(c * base[i] + np.sqrt(1 - c * c) * noise)
        pairs.append((i, n + i))
    vectors = np.vstack([base, np.asarray(copies, np.float32).reshape(-1, dim)])
    return vectors.astype(np.float32), pairs


@pytest.mark.parametrize(
    "exact_limit, cosines",
    [
        (10**9, [0.99, 0.9, 0.8, 0.7, 0.5]),  # exact finds any planted pair
        # IVF over 2,000 structureless vectors scans few cells: near-copies still share one
        (100, [0.999, 0.99, 0.95]),
    ],
)
def test_planted_pairs_are_each_others_nearest(exact_limit: int, cosines: list[float]) -> None:
    vectors, pairs = _planted(2000, 64, cosines)
    searcher = Searcher(vectors, k_hint=5, exact_limit=exact_limit)
    assert searcher.method.name == ("exact" if exact_limit > 2004 else "ivf")
    sims, ids = searcher.search(vectors, 2)
    for a, b in pairs:
        assert ids[a, 0] == a and ids[a, 1] == b  # itself, then its copy
        assert ids[b, 1] == a
        np.testing.assert_allclose(sims[a, 1], vectors[a] @ vectors[b], atol=1e-5)


def test_exact_equals_numpy() -> None:
    vectors, _ = _planted(500, 32, [])
    sims, ids = Searcher(vectors, k_hint=5).search(vectors[:50], 5)
    gram = vectors[:50] @ vectors.T
    expected = np.argsort(-gram, axis=1, kind="stable")[:, :5]
    np.testing.assert_allclose(sims, np.take_along_axis(gram, expected, 1), atol=1e-5)
    assert top_k_recall(ids, expected) == 1.0


def test_approximate_search_reports_its_measured_recall() -> None:
    # Clustered, as embeddings are: IVF's cells follow the clusters.
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((30, 32))
    vectors = (centres[rng.integers(0, 30, 3000)] + 0.3 * rng.standard_normal((3000, 32))).astype(
        np.float32
    )
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    searcher = Searcher(vectors, k_hint=5, exact_limit=1000)
    method = searcher.method
    assert method.name == "ivf" and method.sample == 1000 and 1 <= method.nprobe <= method.nlist
    assert method.recall is not None and method.recall >= 0.99
    assert "recall" in method.describe()


def test_nan_and_zero_vectors_are_left_out_and_counted() -> None:
    vectors = np.array([[1, 0], [np.nan, 1], [0, 0], [3, 4], [np.inf, 0]], np.float32)
    keep, unit, reasons = unit_rows(vectors)
    assert keep.tolist() == [True, False, False, True, False]
    np.testing.assert_allclose(unit, [[1, 0], [0.6, 0.8]])
    assert reasons == {"NaN or infinite values": 2, "zero vector": 1}
