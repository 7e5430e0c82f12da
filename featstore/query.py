"""`featstore.query`, kept where users import it from: the store's SQL interface.

The code lives in `featstore.store.query`; this module re-exports its public names.
"""

from featstore.store.query import (
    VIEWS,
    ModelInfo,
    Store,
    StoreCounts,
    StoreInfo,
    count_rows,
    run_query,
    store_info,
)

__all__ = [
    "VIEWS",
    "ModelInfo",
    "Store",
    "StoreCounts",
    "StoreInfo",
    "count_rows",
    "run_query",
    "store_info",
]
