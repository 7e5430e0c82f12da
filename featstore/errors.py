"""Every error featstore raises on purpose.

    FeatstoreError                 base: catch this to handle any featstore failure
    ├── InputError                 the input tree or an option is unusable
    ├── StoreError                 the store cannot be read or written as asked
    │   ├── ProvenanceMismatchError  new rows would mix with rows made differently
    │   └── QueryError             SQL over the store failed (DuckDB's message inside)
    ├── ModelNotFoundError         weights or a detector pack are not where looked
    └── ModelLoadError             a model file exists but is not the model expected

A bad *image* is never an exception: it becomes a row with a status and an error
(see `featstore.extraction.pipeline`). Messages name the file, what was expected, what was found
and, after "Hint:", what to do.
"""

from __future__ import annotations


class FeatstoreError(Exception):
    """Base class of featstore's own errors."""


class InputError(FeatstoreError):
    """An input folder, file or option cannot be used."""


class StoreError(FeatstoreError):
    """The store cannot be read or written as asked."""


class ProvenanceMismatchError(StoreError):
    """Rows extracted with different settings would mix in one model partition."""


class QueryError(StoreError):
    """A SQL query (or `--where` predicate) over the store failed."""


class ModelNotFoundError(FeatstoreError):
    """Model weights or an InsightFace pack were not found in any place looked at."""


class ModelLoadError(FeatstoreError):
    """A model file was found but does not hold the model expected."""
