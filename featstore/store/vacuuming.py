"""Vacuum one model's table without deleting what a writer is about to commit.

A writer writes its data files first and commits them after: until then they are in no
version, and a vacuum that deleted them would leave the commit pointing at missing files
(every later read fails). Two guards, as Delta Lake's:

- a retention below `SAFE_RETAIN_HOURS` (delta-rs' `enforce_retention_duration`) is refused
  unless the caller says no writer is running (`no_writer_running`, CLI
  `--i-know-no-writer-is-running`);
- whatever the retention, a file modified after the newest commit of the version vacuumed
  is never deleted: only a commit still to come can want it. Both times are the storage's
  own clock (the commit file's and the data file's modification times), so writers' clocks
  do not matter.

delta-rs lists the candidates (a dry run over the same snapshot); featstore deletes those
the second guard lets through. A killed run's leftovers therefore go once a later commit
exists (its rerun, a compaction), never while they might still be committed.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from featstore.errors import InputError
from featstore.store.delta_errors import store_errors

if TYPE_CHECKING:
    from deltalake import DeltaTable

    from featstore.store.location import StoreLocation

SAFE_RETAIN_HOURS = 168.0  # Delta Lake's deletedFileRetentionDuration default (7 days)
NO_WRITER_FLAG = "--i-know-no-writer-is-running"


def check_retention(retain_hours: float, *, no_writer_running: bool) -> None:
    """Refuse a negative retention, and a short one unless no writer is running."""
    if retain_hours < 0:
        raise InputError(f"--retain must be 0 hours or more, got {retain_hours:g}.")
    if retain_hours < SAFE_RETAIN_HOURS and not no_writer_running:
        raise InputError(
            f"--retain {retain_hours:g} is below the safe {SAFE_RETAIN_HOURS:g} hours: a "
            "writer (extract, import-json, compact) running now has written files it has not "
            "committed yet, and vacuum would delete them, breaking the store for good.\nHint: "
            f"stop every writer of this store, then pass {NO_WRITER_FLAG} (Python: "
            "no_writer_running=True); or keep the default retention."
        )


def vacuum_table(
    delta: DeltaTable,
    location: StoreLocation,
    key: str,
    retain_hours: float,
    *,
    dry_run: bool,
    no_writer_running: bool,
) -> list[str]:
    """Delete (or with `dry_run` list) the files of the table at `key` that no version within
    `retain_hours` needs and that are older than `delta`'s version's commit; their paths,
    relative to the table's folder."""
    check_retention(retain_hours, no_writer_running=no_writer_running)
    with store_errors(location.describe(key), location):
        candidates: list[str] = delta.vacuum(
            retention_hours=math.ceil(retain_hours),  # never shorter than asked
            dry_run=True,
            enforce_retention_duration=not no_writer_running,
            full=True,
        )
        newest_commit = location.modified_ns(f"{key}/_delta_log/{delta.version():020d}.json")
        doomed = [
            path
            for path in candidates
            if newest_commit is not None
            and (modified := location.modified_ns(f"{key}/{path}")) is not None
            and modified < newest_commit
        ]
        if not dry_run:
            for path in doomed:
                location.delete_file(f"{key}/{path}")
    return doomed
