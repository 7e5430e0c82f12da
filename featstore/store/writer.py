"""`TableWriter`: a run's rows for one model, committed a batch of identities at a time.

A commit costs a Parquet file and a log entry, so the local engine batches: it commits
every `COMMIT_IDENTITIES` identities or `COMMIT_SECONDS` seconds, whichever comes first.
A kill loses at most that batch, and the rerun redoes exactly it (what is committed is
known from the table's fingerprints). 256 identities of 10 frames are about 8 MB of
768-dim features per model in memory and one file of that size; measured on this
machine, a local commit takes ~15-40 ms, so committing every identity (0.3 s of work on a
CPU) would spend a tenth of the run on commits and leave thousands of tiny files.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from featstore.store.format import FINGERPRINT_COLUMN
from featstore.store.table import ModelTable

COMMIT_IDENTITIES = 256
COMMIT_SECONDS = 10.0


class TableWriter:
    """Rows of one model, committed in batches of whole identities.

    Args:
        table: the model's table, already claimed with `provenance` (`ModelTable.claim`).
        provenance: this run's provenance, checked again at every commit.
        command: recorded with each commit (`featstore history`).
        max_identities, max_seconds: commit when either is reached.
    """

    def __init__(
        self,
        table: ModelTable,
        provenance: Mapping[str, Any],
        *,
        command: str,
        max_identities: int = COMMIT_IDENTITIES,
        max_seconds: float = COMMIT_SECONDS,
    ) -> None:
        self.table = table
        self.provenance = dict(provenance)
        self.command = command
        self.max_identities = max_identities
        self.max_seconds = max_seconds
        self.snapshot = table.open()
        self.snapshot.refresh(self.provenance)  # claimed differently meanwhile?
        self.commits = 0
        self.identities_committed = 0
        self._pending: list[pa.Table] = []
        self._names: list[str] = []
        self._since = 0.0

    def add(self, identity: str, rows: pa.Table, fingerprint: str | None = None) -> None:
        """Queue one identity's rows (all of them); commits when a batch is full."""
        if fingerprint is not None:
            rows = rows.append_column(
                pa.field(FINGERPRINT_COLUMN, pa.string()),
                pa.array([fingerprint] * rows.num_rows, pa.string()),
            )
        if not self._pending:
            self._since = time.monotonic()
        self._pending.append(rows)
        self._names.append(identity)
        if (
            len(self._names) >= self.max_identities
            or time.monotonic() - self._since >= self.max_seconds
        ):
            self.flush()

    @property
    def queued(self) -> frozenset[str]:
        """The identities queued for the next commit."""
        return frozenset(self._names)

    def flush(self) -> None:
        """Commit what is queued (nothing to do when nothing is)."""
        if not self._pending:
            return
        rows = pa.concat_tables(self._pending, promote_options="default")
        # Every identity is committed as a replacement, also one the table did not hold
        # when the run was planned: another writer (the same command started twice, a Ray
        # task retried after its commit) may have added it since, and an append would then
        # double its rows. The predicate makes such a commit conflict and retry instead.
        self.snapshot.commit(rows, identities=list(self._names), command=self.command)
        self.commits += 1
        self.identities_committed += len(self._names)
        self._pending, self._names = [], []
