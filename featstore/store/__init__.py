"""The store: where rows live and how they are read back.

Owns the on-disk layout and its locations (local folders and object storage), the
provenance every model's rows share, and the DuckDB views (`images`, `faces`, `frames`,
`identities`, `valid_frames`) every reader goes through.

One door: `Store(path_or_uri)` (`featstore.store.Store`, also `featstore.Store`), and one
snapshot type, `store.model(name, version)` -> `ModelSnapshot`.

May import: `featstore.errors` only. Everything else in featstore builds on this package,
never the other way round.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["ModelInfo", "ModelSnapshot", "Store"]

_LAZY = {
    "Store": "featstore.store.store",
    "ModelInfo": "featstore.store.snapshot",
    "ModelSnapshot": "featstore.store.snapshot",
}

if TYPE_CHECKING:
    from featstore.store.snapshot import ModelInfo, ModelSnapshot
    from featstore.store.store import Store


def __getattr__(name: str) -> Any:
    # Loaded on first use: submodules such as `featstore.store.paths` stay cheap to import.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'featstore.store' has no attribute {name!r}")
