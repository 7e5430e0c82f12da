"""The rows of the neighbors table: identities' K nearest identities, images' nearest images.

Rows come out as Arrow tables with the columns of `featstore.store.neighbors.SCHEMA`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from featstore.neighbors.search import BLOCK, Searcher
from featstore.neighbors.vectors import Embeddings, IdentityVectors
from featstore.store.neighbors import SCHEMA

_SAME_BLOCK = 2048  # rows of one identity's Gram matrix at a time
_OWN_MARGIN = 256  # extra results asked for, so a query's own images do not crowd out others
_MAX_K = 16384  # a query whose own identity fills this many results keeps what it found


def identity_rows(
    names: list[str],
    found: IdentityVectors,
    searcher: Searcher,
    k: int,
    model: str,
    threshold: float,
) -> pa.Table:
    """Each identity's `k` nearest other identities by `found.kind` vectors."""
    k = min(k, len(found.index) - 1)
    if k < 1:
        return SCHEMA.empty_table()
    sims, ids = searcher.search(found.vectors, k + 1)
    own = (ids == np.arange(len(ids))[:, None]) | (ids < 0)
    order = np.argsort(own, axis=1, kind="stable")[:, :k]  # itself moved to the end
    sims, ids = np.take_along_axis(sims, order, 1), np.take_along_axis(ids, order, 1)
    query = np.repeat(found.index, k)
    neighbor = found.index[ids.ravel()]
    return _table(
        model,
        "identity",
        found.kind,
        pa.array(names).take(query),
        pa.array(names).take(neighbor),
        None,
        None,
        sims.ravel(),
        np.tile(np.arange(1, k + 1, dtype=np.int32), len(found.index)),
        threshold,
    )


def image_rows(emb: Embeddings, searcher: Searcher, k: int, threshold: float) -> Iterator[pa.Table]:
    """For every image: its nearest images in other identities (scope 'other') and in its
    own (scope 'same', itself excluded). Rank 1 is always kept, further ranks up to `k`
    only at or above `threshold`."""
    yield from _same_rows(emb, k, threshold)
    yield from _other_rows(emb, searcher, k, threshold)


def _same_rows(emb: Embeddings, k: int, threshold: float) -> Iterator[pa.Table]:
    """Exact, per identity: the Gram matrix of its images, a block of rows at a time."""
    starts = emb.starts
    queries: list[NDArray[np.int64]] = []
    others: list[NDArray[np.int64]] = []
    cosines: list[NDArray[np.float32]] = []
    ranks: list[NDArray[np.int32]] = []
    for begin, end in zip(starts[:-1], starts[1:], strict=True):
        size = int(end - begin)
        if size < 2:
            continue
        own = emb.vectors[begin:end]
        kk = min(k, size - 1)
        for row in range(0, size, _SAME_BLOCK):
            gram = own[row : row + _SAME_BLOCK] @ own.T
            rows = np.arange(len(gram))
            gram[rows, rows + row] = -np.inf  # not itself
            top = np.argpartition(-gram, kk - 1, axis=1)[:, :kk]  # kk < size: never itself
            sims = np.take_along_axis(gram, top, 1)
            order = np.argsort(-sims, axis=1, kind="stable")
            top, sims = np.take_along_axis(top, order, 1), np.take_along_axis(sims, order, 1)
            rank = np.broadcast_to(np.arange(1, kk + 1, dtype=np.int32), sims.shape)
            keep = (rank == 1) | (sims >= threshold)
            queries.append((begin + row + np.nonzero(keep)[0]).astype(np.int64))
            others.append((begin + top[keep]).astype(np.int64))
            cosines.append(sims[keep].astype(np.float32))
            ranks.append(rank[keep])
        if sum(len(q) for q in queries) >= BLOCK * 8:
            yield _image_table(emb, "same", queries, others, cosines, ranks, threshold)
            queries, others, cosines, ranks = [], [], [], []
    if queries:
        yield _image_table(emb, "same", queries, others, cosines, ranks, threshold)


def _other_rows(
    emb: Embeddings, searcher: Searcher, k: int, threshold: float
) -> Iterator[pa.Table]:
    """Searched among all images; a query's own identity's results are dropped, and a
    query left with fewer than `k` others is searched again with a larger k."""
    owner = emb.image_identity
    sizes = np.diff(emb.starts)
    largest = int(sizes.max()) if len(sizes) else 0
    n = searcher.size
    for start in range(0, len(owner), BLOCK):
        pending = np.arange(start, min(start + BLOCK, len(owner)))
        wanted = k + 1 + min(largest, _OWN_MARGIN)
        while len(pending):
            kk = min(n, wanted)
            sims, ids = searcher.search(emb.vectors[pending], kk)
            own = (ids < 0) | (owner[np.maximum(ids, 0)] == owner[pending][:, None])
            order = np.argsort(own, axis=1, kind="stable")[:, :k]
            sims, ids = np.take_along_axis(sims, order, 1), np.take_along_axis(ids, order, 1)
            valid = ~np.take_along_axis(own, order, 1)
            # Searched everything (or as far as is reasonable): what was found is all.
            done = (valid.sum(axis=1) >= k) | (kk >= min(n, _MAX_K))
            rank = np.cumsum(valid, axis=1).astype(np.int32)
            keep = valid & ((rank == 1) | (sims >= threshold)) & done[:, None]
            rows = np.nonzero(keep)
            yield _image_table(
                emb,
                "other",
                [pending[rows[0]]],
                [ids[keep]],
                [sims[keep]],
                [rank[keep]],
                threshold,
            )
            pending, wanted = pending[~done], wanted * 4


def _image_table(
    emb: Embeddings,
    scope: str,
    queries: list[NDArray[np.int64]],
    others: list[NDArray[np.int64]],
    cosines: list[NDArray[np.float32]],
    ranks: list[NDArray[np.int32]],
    threshold: float,
) -> pa.Table:
    query, other = np.concatenate(queries), np.concatenate(others)
    names = pa.array(emb.identities)
    paths = pa.array(emb.image_path)
    return _table(
        emb.model,
        "image",
        scope,
        names.take(emb.image_identity[query]),
        names.take(emb.image_identity[other]),
        paths.take(query),
        paths.take(other),
        np.concatenate(cosines),
        np.concatenate(ranks),
        threshold,
    )


def _table(
    model: str,
    kind: str,
    vector: str,
    identity: pa.Array,
    neighbor: pa.Array,
    image_path: pa.Array | None,
    other_path: pa.Array | None,
    cosine: NDArray[np.float32],
    rank: NDArray[np.int32],
    threshold: float,
) -> pa.Table:
    n = len(cosine)
    nulls = pa.nulls(n, pa.string())
    return pa.table(
        {
            "model": pa.array(np.full(n, model, dtype=object), pa.string()),
            "kind": pa.array(np.full(n, kind, dtype=object), pa.string()),
            "vector": pa.array(np.full(n, vector, dtype=object), pa.string()),
            "identity": identity,
            "neighbor": neighbor,
            "image_path": image_path if image_path is not None else nulls,
            "other_path": other_path if other_path is not None else nulls,
            "cosine": pa.array(np.asarray(cosine, np.float32)),
            "rank": pa.array(np.asarray(rank, np.int32)),
            "threshold": pa.array(np.full(n, threshold, np.float32)),
        },
        schema=SCHEMA,
    )
