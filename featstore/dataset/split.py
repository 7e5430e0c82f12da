"""`split_by_identity`: train and validation subsets that share no person.

Identities are the unit of the split, and with `group_neighbors` so are groups of
identities that the store's neighbors table (`featstore neighbors`,
`featstore.store.neighbors`) joins: an identity edge at or above its threshold (one
person under two names, perhaps) or an image copied across two identities. Groups are the
connected components of those edges (scipy's `connected_components` when scipy is
installed, else the union-find below), and a group goes to one side whole, so a person
filed under two names cannot be in training and validation at once.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from torch.utils.data import Subset

from featstore.errors import InputError

log = logging.getLogger(__name__)


class Splittable(Protocol):
    """What the split needs of a `FeatureDataset`."""

    identities: list[str]
    sample_identity: NDArray[np.int32]
    store_source: Any  # the store a store-backed dataset reads, else None

    def __len__(self) -> int: ...


@dataclass(frozen=True)
class SplitInfo:
    """What the split did, as `train.split_info` and `val.split_info`."""

    groups_merged: int  # groups of two or more identities kept on one side
    identities_grouped: int  # identities in those groups
    edges: int  # neighbor edges between the dataset's identities


def split_by_identity(
    dataset: Any, val_fraction: float, seed: int = 0, group_neighbors: bool | None = None
) -> tuple[Subset[dict[str, Any]], Subset[dict[str, Any]]]:
    """Train and validation subsets with no identity (and no identity group) in both.

    About `round(val_fraction * identities)` identities, drawn with `seed`, go to
    validation (at least one when `val_fraction > 0`, and at least one stays for
    training); every sample of an identity goes where the identity goes. Each subset
    keeps sample order.

    Args:
        group_neighbors: keep identities joined by the store's neighbors table on one side
            (see the module docstring). None (default): when the dataset reads a store that
            has a neighbors table. True: required (an error without one). False: off.
            Groups go whole, so validation may get a few identities more than asked.
    """
    if not 0 <= val_fraction < 1 or math.isnan(val_fraction):
        raise InputError(f"val_fraction must be in [0, 1), got {val_fraction!r}.")
    count = len(dataset.identities)
    n_val = min(count - 1, max(1 if val_fraction > 0 else 0, round(val_fraction * count)))
    edges = _edges(dataset, group_neighbors)
    labels, merged = identity_groups(count, edges)
    info = SplitInfo(
        groups_merged=merged,
        identities_grouped=int(np.isin(labels, _shared(labels)).sum()) if merged else 0,
        edges=len(edges),
    )
    if merged:
        log.warning(
            "split_by_identity: %d groups of identities (%d identities) joined by the "
            "neighbors table are kept on one side each",
            info.groups_merged,
            info.identities_grouped,
        )
        in_val = _grouped_choice(labels, n_val, seed)
        if n_val and not in_val.any():
            raise InputError(
                f"split_by_identity: the neighbors table joins the dataset's {count} "
                f"identities into groups ({merged} of two or more) none of which can go to "
                "validation without leaving training empty.\nHint: raise the threshold "
                "(`featstore neighbors --threshold T --copy-threshold T`), or pass "
                "group_neighbors=False."
            )
    else:  # exactly the split without groups
        chosen = np.random.default_rng(seed).permutation(count)[:n_val]
        in_val = np.zeros(count, dtype=bool)
        in_val[chosen] = True
    sample_in_val = in_val[dataset.sample_identity]
    train = Subset(dataset, np.flatnonzero(~sample_in_val).tolist())
    val = Subset(dataset, np.flatnonzero(sample_in_val).tolist())
    train.split_info = val.split_info = info  # type: ignore[attr-defined]
    return train, val


def identity_groups(count: int, edges: NDArray[np.int64]) -> tuple[NDArray[np.int64], int]:
    """(group label per identity, number of groups of two or more) for `edges` [E, 2]."""
    if not len(edges):
        return np.arange(count, dtype=np.int64), 0
    try:
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components
    except ImportError:
        labels = union_find(count, edges)
    else:
        graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), (count, count))
        labels = connected_components(graph, directed=False)[1].astype(np.int64)
    sizes = np.bincount(labels)
    return labels, int((sizes > 1).sum())


def union_find(count: int, edges: NDArray[np.int64]) -> NDArray[np.int64]:
    """Connected-component labels (the smallest member's index) without scipy."""
    parent = np.arange(count, dtype=np.int64)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]  # path halving
            i = int(parent[i])
        return i

    for a, b in edges.tolist():
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.asarray([root(i) for i in range(count)], dtype=np.int64)


def _shared(labels: NDArray[np.int64]) -> NDArray[np.int64]:
    return np.flatnonzero(np.bincount(labels) > 1)


def _grouped_choice(labels: NDArray[np.int64], n_val: int, seed: int) -> NDArray[np.bool_]:
    """Whole groups, in a seeded order, until validation holds `n_val` identities; a group
    that would leave training empty is skipped."""
    count = len(labels)
    in_val = np.zeros(count, dtype=bool)
    taken = 0
    for group in np.random.default_rng(seed).permutation(np.unique(labels)):
        if taken >= n_val:
            break
        members = labels == group
        size = int(members.sum())
        if taken + size >= count:
            continue
        in_val |= members
        taken += size
    return in_val


def _edges(dataset: Any, group_neighbors: bool | None) -> NDArray[np.int64]:
    """Pairs of the dataset's identity indices joined in the store's neighbors tables."""
    if group_neighbors is False:
        return np.zeros((0, 2), np.int64)
    source = getattr(dataset, "store_source", None)
    if source is None:
        if group_neighbors:
            raise InputError(
                "split_by_identity(group_neighbors=True): the dataset reads a JSON file, "
                "which has no neighbors table.\nHint: build the dataset from a store and "
                "run `featstore neighbors --store ...` on it."
            )
        return np.zeros((0, 2), np.int64)
    from featstore.store.neighbors import (
        DUPLICATE_VIEW,
        IDENTITY_VIEW,
        neighbor_models,
    )
    from featstore.store.store import Store

    store = Store(source)
    if not neighbor_models(store.location):
        if group_neighbors:
            raise InputError(
                f"split_by_identity(group_neighbors=True): store {store.location} has no "
                "neighbors table.\nHint: run `featstore neighbors --store ...` first."
            )
        return np.zeros((0, 2), np.int64)
    rows = store.sql(
        f"""SELECT identity, neighbor FROM {IDENTITY_VIEW} WHERE above_threshold
            UNION SELECT identity, other_identity FROM {DUPLICATE_VIEW}
            WHERE NOT same_identity"""
    )
    position = {name: i for i, name in enumerate(dataset.identities)}
    pairs = [
        (position[a], position[b])
        for a, b in zip(
            rows.column("identity").to_pylist(), rows.column("neighbor").to_pylist(), strict=True
        )
        if a in position and b in position and a != b
    ]
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
