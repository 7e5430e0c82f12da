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

from typing import TYPE_CHECKING

from featstore.errors import StoreError

if TYPE_CHECKING:
    from featstore.store.snapshot import TableRef

_VERSIONS_CHECKED = 20  # versions looked at for "readable versions" (newest first)
_NAMES_SHOWN = 2


def require_files(table: TableRef, version: int, files: list[str]) -> None:
    """Refuse to read `version` of `table` when some of its `files` are gone.

    Raises:
        StoreError: saying whether a vacuum removed them (an old version) or the table
            is damaged (the latest), and which versions can be read.
    """
    present = _present(table)
    missing = [f for f in files if _relative(table, f) not in present]
    if not missing:
        return
    readable = _readable_versions(table, present)
    names = ", ".join(_relative(table, f) for f in missing[:_NAMES_SHOWN])
    more = f" and {len(missing) - _NAMES_SHOWN} more" if len(missing) > _NAMES_SHOWN else ""
    gone = f"{len(missing)} of its {len(files)} data files are gone ({names}{more})"
    listed = _versions_text(readable)
    if readable and version < readable[0]:
        raise StoreError(
            f"version {version} of {table} cannot be read: {gone}. `featstore vacuum` "
            "deleted them: it removes the files of versions older than its retention, and "
            f"those versions cannot be read any more. Readable: {listed}.\nHint: read one "
            "of those (--version N, or no --version for the latest); `featstore history "
            "--store ...` lists the versions."
        )
    raise StoreError(
        f"version {version} of {table} cannot be read: {gone}, though no vacuum may delete "
        "the files of the latest version: they were deleted outside featstore (or by a "
        f"vacuum with a short retention while a writer ran). Readable: {listed}.\nHint: read "
        "a readable version (--version N), restore the files from a backup, or extract the "
        "model again into a new --store."
    )


def _present(table: TableRef) -> set[str]:
    """The table folder's file names (data files live directly in it)."""
    try:
        return set(table.location.children(table.key))
    except OSError as exc:
        raise StoreError(f"cannot list {table}: {table.location.scrub(str(exc))}") from exc


def _relative(table: TableRef, path: str) -> str:
    return path[len(table.location.path(table.key)) + 1 :]


def _readable_versions(table: TableRef, present: set[str]) -> list[int]:
    """Versions (newest first, up to `_VERSIONS_CHECKED`) whose files are all present."""
    readable: list[int] = []
    latest = table.open().version
    for version in range(latest, max(latest - _VERSIONS_CHECKED, -1), -1):
        try:
            files = table.open(version).files
        except StoreError:  # its log entry is gone too
            break
        if all(_relative(table, f) in present for f in files):
            readable.append(version)
        elif readable:  # older than a vacuumed one: vacuumed too
            break
    return readable


def _versions_text(versions: list[int]) -> str:
    if not versions:
        return "none of the last versions"
    newest, oldest = versions[0], versions[-1]
    if len(versions) == newest - oldest + 1 and len(versions) > 2:
        return f"versions {oldest} to {newest}"
    return "version " + ", ".join(str(v) for v in reversed(versions))
