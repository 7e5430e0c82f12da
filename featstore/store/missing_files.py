"""A version whose data files are gone, told apart from a damaged file before DuckDB meets it.

`featstore vacuum` deletes the files of versions older than its retention, so those
versions can no longer be read: that is expected, and the user needs to hear which
versions still read. Files missing from the latest version are damage (deleted by hand, or
by a vacuum run beside a writer). Either way DuckDB's own words ("No files found that
match the pattern", or a "Permission Error" for a second missing file on a locked
connection) send users the wrong way, so the check is made first: one listing of the
table's folder per read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from featstore.errors import StoreError

if TYPE_CHECKING:
    from featstore.store.snapshot import TableRef

_VERSIONS_CHECKED = 20  # versions looked at for "readable versions" (newest first)
_NAMES_SHOWN = 2
_LOG = "_delta_log"
# A commit, or a checkpoint (single or multi-part), which delta-rs can open the version from
# once older commits were cleaned up.
_COMMIT = re.compile(r"(\d{20})\.(?:json|checkpoint(?:\.\d+\.\d+)?\.parquet)")


def require_files(table: TableRef, version: int, files: list[str]) -> None:
    """Refuse to read `version` of `table` when some of its `files` are gone.

    Raises:
        StoreError: saying whether a vacuum removed them (an old version) or the table
            is damaged (the latest), and which versions exist and can be read.
    """
    present = _present(table)
    missing = [f for f in files if _relative(table, f) not in present]
    if not missing:
        return
    state = version_state(table, present)
    names = ", ".join(_relative(table, f) for f in missing[:_NAMES_SHOWN])
    more = f" and {len(missing) - _NAMES_SHOWN} more" if len(missing) > _NAMES_SHOWN else ""
    gone = f"{len(missing)} of its {len(files)} data files are gone ({names}{more})"
    if version < state.latest:
        raise StoreError(
            f"version {version} of {table} cannot be read: {gone}. `featstore vacuum` "
            "deleted them: it removes the files of versions older than its retention, and "
            f"those versions cannot be read any more. {state.text()}.\nHint: read "
            "one of the readable versions (--version N, or no --version for the latest); "
            f"`featstore history --store ... --model {table.model}` lists the versions."
        )
    raise StoreError(
        f"version {version} of {table} cannot be read: {gone}, though no vacuum may delete "
        "the files of the latest version: they were deleted outside featstore (or by a "
        f"vacuum with a short retention while a writer ran). {state.text()}.\nHint: read "
        "a readable version (--version N), restore the files from a backup, or extract the "
        "model again into a new --store."
    )


def require_version(table: TableRef, version: int) -> None:
    """Refuse `version` when the table's log does not have it (past the end, or before
    the oldest commit the log keeps), naming the versions that exist and can be read."""
    if version in _log_versions(table):  # one listing of the log: the usual case
        return
    state = version_state(table)
    raise StoreError(
        f"{table} has no version {version}: {state.text()}.\nHint: read one of the readable "
        f"versions (--version N, or no --version for the latest); `featstore history --store "
        f"... --model {table.model}` lists them."
    )


@dataclass(frozen=True)
class VersionState:
    """Which versions a table's log has, and which of them can still be read."""

    model: str
    existing: list[int]  # the versions the log has, oldest first
    readable: list[int]  # of the newest `_VERSIONS_CHECKED`, those whose files are all there

    @property
    def latest(self) -> int:
        return self.existing[-1]

    def text(self) -> str:
        """ "model m has versions 0-6; versions 0-3 were vacuumed (their data files are
        gone); readable: 4-6"."""
        if not self.existing:
            return f"model {self.model} has no version"
        checked = self.existing[-_VERSIONS_CHECKED:]
        gone = [v for v in checked if v not in self.readable and v != self.latest]
        text = f"model {self.model} has {_versions(self.existing)}"
        if gone:
            text += (
                f"; {_versions(gone)} {'was' if len(gone) == 1 else 'were'} vacuumed "
                "(their data files are gone)"
            )
        if self.latest not in self.readable:
            text += f"; the latest, {self.latest}, has lost data files"
        unchecked = self.existing[:-_VERSIONS_CHECKED]
        if unchecked:
            text += f"; {_versions(unchecked)} not checked"
        return text + f"; readable: {_ranges(self.readable) if self.readable else 'none'}"


def version_state(table: TableRef, present: set[str] | None = None) -> VersionState:
    """The table's versions (from its log's file names) and the readable ones among them."""
    present = _present(table) if present is None else present
    existing = _log_versions(table)
    readable = sorted(_readable_versions(table, present, existing))
    return VersionState(table.model, existing, readable)


def _log_versions(table: TableRef) -> list[int]:
    """The versions of the table's commits (`_delta_log/<20 digits>.json`) and checkpoints,
    oldest first."""
    try:
        names = table.location.children(f"{table.key}/{_LOG}")
    except OSError as exc:
        raise StoreError(f"cannot list {table}: {table.location.scrub(str(exc))}") from exc
    return sorted({int(m.group(1)) for m in map(_COMMIT.fullmatch, names) if m})


def _present(table: TableRef) -> set[str]:
    """The table folder's file names (data files live directly in it)."""
    try:
        return set(table.location.children(table.key))
    except OSError as exc:
        raise StoreError(f"cannot list {table}: {table.location.scrub(str(exc))}") from exc


def _relative(table: TableRef, path: str) -> str:
    return path[len(table.location.path(table.key)) + 1 :]


def _readable_versions(table: TableRef, present: set[str], existing: list[int]) -> list[int]:
    """Versions (newest first, of the newest `_VERSIONS_CHECKED`) whose files are all
    present."""
    readable: list[int] = []
    for version in reversed(existing[-_VERSIONS_CHECKED:]):
        try:
            files = table.open_log(version).files
        except StoreError:  # its log entry is unreadable: not readable either
            continue
        if all(_relative(table, f) in present for f in files):
            readable.append(version)
    return readable


def _ranges(versions: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2, 5"."""
    parts: list[str] = []
    ordered = sorted(versions)
    start = previous = ordered[0]
    for version in [*ordered[1:], None]:
        if version is not None and version == previous + 1:
            previous = version
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        if version is not None:
            start = previous = version
    return ", ".join(parts)


def _versions(versions: list[int]) -> str:
    return ("version " if len(versions) == 1 else "versions ") + _ranges(versions)
