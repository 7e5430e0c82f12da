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

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from featstore.errors import FeatstoreError, StoreError

if TYPE_CHECKING:
    from featstore.store.location import StoreLocation

_MESSAGE_CHARS = 500
_NEARLY_FULL = 1 << 20  # bytes free: a write that failed there failed for want of space
# How the storage libraries say a write ran out of room (ENOSPC, EFBIG, EDQUOT).
_DISK_FULL = (
    "No space left on device",
    "os error 28",
    "File too large",
    "os error 27",
    "Disk quota exceeded",
    "os error 122",
)
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
    full_text = location.scrub(" ".join(_chain(exc)))
    if _disk_full(exc, full_text, location):
        return StoreError(
            f"{where}: the disk holding the store is full ({message}). What this command was "
            "writing was not committed: the store is as it was before it (every earlier "
            "commit is intact).\nHint: free some space (or move the store to a larger disk) "
            "and run the same command again: it resumes; `featstore vacuum` removes the "
            "files the interrupted write left."
        )
    if _read_only(exc, full_text):
        return StoreError(
            f"cannot write to {where}: the store is read-only here ({message}).\nHint: this "
            "command writes or deletes files in the store: run it where the store is "
            "writable (not a read-only mount or snapshot), as a user who may write it."
        )
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


def _chain(exc: BaseException) -> list[str]:
    """The messages of `exc` and its causes (delta-rs keeps the OS error in the cause)."""
    return [str(e) for e in _causes(exc)]


def _disk_full(exc: BaseException, text: str, location: StoreLocation) -> bool:
    if any(isinstance(e, OSError) and e.errno == errno.ENOSPC for e in _causes(exc)):
        return True
    if any(sign in text for sign in _DISK_FULL):
        return True
    # delta-rs' object store often says only "Generic LocalFileSystem error" (or panics,
    # "Already shut down"): a local disk with next to no space left tells.
    if location.local is None:
        return False
    try:
        return shutil.disk_usage(location.local).free < _NEARLY_FULL
    except OSError:
        return False


def _read_only(exc: BaseException, text: str) -> bool:
    if any(isinstance(e, OSError) and e.errno == errno.EROFS for e in _causes(exc)):
        return True
    return "Read-only file system" in text or "os error 30" in text


def _causes(exc: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(found) < 8:
        found.append(seen)
        seen = seen.__cause__ or seen.__context__
    return found


def damaged_store(location: StoreLocation, detail: str) -> StoreError:
    """A data file of the store cannot be read: `detail` says which and how."""
    return StoreError(
        f"store {location} is damaged: {detail}\nHint: a data file of the table was "
        "truncated or changed outside featstore. Read an earlier version (--version; "
        "`featstore history` lists them), restore the file from a backup, or extract "
        "the model again into a new --store."
    )
