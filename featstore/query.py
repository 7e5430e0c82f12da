"""`featstore.query`, kept where users import it from: the store's SQL interface.

The code lives in `featstore.store.query`; this module re-exports its public names.
"""

from featstore.store.query import *  # noqa: F403 - the names of __all__ below
from featstore.store.query import __all__  # noqa: F401
