"""SQL over the store: `featstore query` and `featstore info`.

The views (`featstore.store.views`) are created by `Store.connect`; this module runs
queries over them and counts what a store holds without reading the feature columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from featstore.store.neighbors import StoredNeighbors, stored_neighbors
from featstore.store.snapshot import ModelInfo
from featstore.store.store import Store
from featstore.store.views import VIEWS, describe_views

if TYPE_CHECKING:
    pass

__all__ = [
    "VIEWS",
    "ModelInfo",
    "Store",
    "StoreCounts",
    "StoreInfo",
    "count_rows",
    "describe_views",
    "store_info",
]


@dataclass(frozen=True)
class StoreCounts:
    """One model's rows counted by role and status."""

    identities: int = 0
    valid_identities: int = 0  # frontal image ok and at least one frame ok (docs/formats.md)
    faces: dict[str, int] = field(default_factory=dict)
    frames: dict[str, int] = field(default_factory=dict)

    @property
    def frame_total(self) -> int:
        return sum(self.frames.values())


def count_rows(
    store: Store, *, model: str | None = None, version: int | None = None
) -> dict[str, StoreCounts]:
    """Per model: identities, valid identities, images by role and status.

    Read from each data file's summary (`featstore.store.summary`), never from the rows:
    no image or feature column is opened, and where the files' identity ranges follow each
    other only the summaries' footers are read (a million identities cost 42 footers).
    """
    if version is not None:
        model = store.choose(model)
    names = [model] if model is not None else store.model_names()
    counts = {}
    for name in names:
        totals = store.model(name, version).totals()
        counts[name] = StoreCounts(
            identities=totals.identities,
            valid_identities=totals.valid,
            faces=dict(sorted(totals.counts.get("face", {}).items())),
            frames=dict(sorted(totals.counts.get("frame", {}).items())),
        )
    return counts


@dataclass(frozen=True)
class StoreInfo:
    """What `featstore info` shows; computed without reading the feature columns."""

    path: Path | str  # the folder, or the URI (credentials scrubbed)
    models: list[ModelInfo]
    counts: dict[str, StoreCounts]
    disk_bytes: int
    neighbors: dict[str, StoredNeighbors] = field(default_factory=dict)  # by model searched

    @property
    def identities(self) -> dict[str, int]:
        return {name: c.identities for name, c in self.counts.items()}

    @property
    def valid_identities(self) -> dict[str, int]:
        return {name: c.valid_identities for name, c in self.counts.items()}

    @property
    def images_by_status(self) -> dict[str, dict[str, int]]:
        """model -> "role/status" -> count."""
        return {
            name: {
                **{f"face/{s}": n for s, n in c.faces.items()},
                **{f"frame/{s}": n for s, n in c.frames.items()},
            }
            for name, c in self.counts.items()
        }


def store_info(store: Store, *, model: str | None = None, version: int | None = None) -> StoreInfo:
    """Models, row counts and sizes of a store (of one model's version, when given)."""
    where = store.location
    if where.local is not None:
        disk = sum(p.stat().st_size for p in where.local.rglob("*") if p.is_file())
    else:
        disk = sum(size for _, size in where.list_files())
    if version is not None or model is not None:
        models = [store.model(model, version).info]
    else:
        models = store.models()
    counts = count_rows(store, model=model, version=version)
    neighbors = {n.model: n for n in stored_neighbors(where)}
    return StoreInfo(where.local or where.display, models, counts, disk, neighbors)
