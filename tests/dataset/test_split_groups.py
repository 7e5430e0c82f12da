"""split_by_identity keeps identities that the neighbors table joins on one side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import COPIED_IDENTITY, MODEL, Extracted, copy_store

from featstore import FeatureDataset, split_by_identity
from featstore.dataset.split import identity_groups, union_find
from featstore.errors import InputError
from featstore.neighbors import find_neighbors

# Only the planted duplicates: the stand-in recogniser puts every other pair near 0.9-0.99.
PLANTED = 0.9999


@pytest.fixture(scope="module")
def grouped(neighbors_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = copy_store(neighbors_store, tmp_path_factory.mktemp("grouped") / "store")
    find_neighbors(store, threshold=PLANTED, copy_threshold=PLANTED)
    return store


def _sides(dataset: FeatureDataset, subset) -> set[str]:  # type: ignore[no-untyped-def]
    return {dataset.identities[dataset.sample_identity[i]] for i in subset.indices}


def test_joined_identities_land_on_one_side(grouped: Path, tmp_path: Path) -> None:
    dataset = FeatureDataset(grouped, model=MODEL, cache_dir=tmp_path)
    for seed in range(8):
        train, val = split_by_identity(dataset, val_fraction=0.4, seed=seed)
        assert train.split_info.groups_merged == 2  # {001, dup} by identity, {002, 003} by a copy
        assert train.split_info.identities_grouped == 4
        for side in (_sides(dataset, train), _sides(dataset, val)):
            assert ("person_001" in side) == (COPIED_IDENTITY in side)
            assert ("person_002" in side) == ("person_003" in side)
        assert _sides(dataset, train).isdisjoint(_sides(dataset, val))
        assert _sides(dataset, val) and _sides(dataset, train)


def test_off_is_the_plain_split(grouped: Path, tmp_path: Path) -> None:
    dataset = FeatureDataset(grouped, model=MODEL, cache_dir=tmp_path)
    train, val = split_by_identity(dataset, val_fraction=0.4, seed=3, group_neighbors=False)
    count = len(dataset.identities)
    chosen = set(np.random.default_rng(3).permutation(count)[: round(0.4 * count)].tolist())
    assert _sides(dataset, val) == {dataset.identities[i] for i in chosen}
    assert train.split_info.groups_merged == 0


def test_one_group_of_everybody_is_refused(neighbors_store: Path, tmp_path: Path) -> None:
    store = copy_store(neighbors_store, tmp_path / "store")
    find_neighbors(store)  # the stand-in's defaults join everybody
    dataset = FeatureDataset(store, model=MODEL, cache_dir=tmp_path / "cache")
    with pytest.raises(InputError, match="raise the threshold"):
        split_by_identity(dataset, val_fraction=0.3)


def test_group_neighbors_needs_a_table(extracted: Extracted, tmp_path: Path) -> None:
    dataset = FeatureDataset(extracted.store, model=MODEL, cache_dir=tmp_path)
    train, _ = split_by_identity(dataset, val_fraction=0.3)  # no table: plain split
    assert train.split_info.edges == 0
    with pytest.raises(InputError, match="has no neighbors table"):
        split_by_identity(dataset, val_fraction=0.3, group_neighbors=True)


def test_union_find_agrees_with_scipy() -> None:
    rng = np.random.default_rng(0)
    edges = rng.integers(0, 300, (200, 2))
    labels, merged = identity_groups(300, edges)
    fallback = union_find(300, edges)
    # The same partition: two identities share a label in one exactly when in the other.
    assert np.array_equal(labels[:, None] == labels[None, :], fallback[:, None] == fallback)
    assert merged == int((np.bincount(fallback) > 1).sum())
