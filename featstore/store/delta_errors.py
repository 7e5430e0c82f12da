"""One translation of the storage libraries' exceptions into featstore's `StoreError`.

delta-rs (`deltalake`), DuckDB and pyarrow each raise their own exception types; every
place that calls them on a store's table goes through `store_errors`, which matches them
by class and says what the user can do:

- a version the log does not have (time travel past the end or before vacuum),
- a log delta-rs cannot read (damaged, or another program's),
- a Rust panic inside delta-rs (pyo3's `PanicException`, a `BaseException` that is not an
  `Exception`: pyo3 does not export its class, so it is recognised by that position in
  the hierarchy),
- any other failure, with its first line, the table named and credentials scrubbed.

featstore's own errors pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from featstore.errors import FeatstoreError, StoreError

if TYPE_CHECKING:
    from featstore.store.location import StoreLocation

_MESSAGE_CHARS = 500
_NOT_PANICS = (Exception, KeyboardInterrupt, SystemExit, GeneratorExit)


@contextmanager
def store_errors(
    where: str, location: StoreLocation, *, version: int | None = None
) -> Iterator[None]:
    """Run the block; turn a storage library's exception into a StoreError about `where`.

    Args:
        where: what is being read or written, as users know it (a table's description).
        location: the store's location (scrubs credentials out of messages).
        version: the version asked for, when the block opens one.
    """
    try:
        yield
    except FeatstoreError:
        raise
    except BaseException as exc:
        if not isinstance(exc, Exception) and isinstance(exc, _NOT_PANICS):
            raise  # Ctrl-C and interpreter exit are not storage failures
        raise store_error(exc, where, location, version=version) from exc


def store_error(
    exc: BaseException, where: str, location: StoreLocation, *, version: int | None = None
) -> StoreError:
    """The StoreError for `exc`, met on `where` (see `store_errors`)."""
    from deltalake.exceptions import DeltaError, DeltaProtocolError

    text = location.scrub(str(exc)).strip()
    message = (text.splitlines()[0] if text else type(exc).__name__)[:_MESSAGE_CHARS]
    if version is not None and "version" in message.lower():
        return StoreError(
            f"{where} has no version {version}: {message}\nHint: `featstore history "
            "--store ...` lists the versions (old ones go once vacuum removes their files)."
        )
    # The log itself is unreadable: the base classes only (a failed commit, a missing
    # table or a schema mismatch are their subclasses and say enough in their message).
    if type(exc) in (DeltaError, DeltaProtocolError) or not isinstance(exc, Exception):
        return StoreError(
            f"cannot read the Delta table {where}: {message}\nHint: its _delta_log is "
            "damaged or from another program; extract the model again into a new --store."
        )
    return StoreError(f"{where}: {message}")
