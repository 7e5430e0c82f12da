"""`featstore.query`, kept where users import it from: the store's SQL interface.

The code lives in `featstore.store.query`; this module re-exports its public names, and
`run_query`, the old second name of `Store.sql`, which warns and calls it.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from featstore.store import Store
from featstore.store.query import *  # noqa: F403 - the names of __all__ below
from featstore.store.query import __all__ as _QUERY_ALL

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [*_QUERY_ALL, "run_query"]


def run_query(
    store: Store, query: str, *, model: str | None = None, version: int | None = None
) -> pa.Table:
    """Deprecated: use `store.sql(query, model=..., version=...)`."""
    warnings.warn(
        "featstore.query.run_query is deprecated; use Store.sql", DeprecationWarning, stacklevel=2
    )
    return store.sql(query, model=model, version=version)
