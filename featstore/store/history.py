"""`Version`: one entry of a model table's history, as `featstore history` shows it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from featstore.store.properties import ROWS_ADDED_KEY


@dataclass(frozen=True)
class Version:
    """One entry of a table's history."""

    version: int
    timestamp_ms: int
    operation: str
    command: str | None  # the featstore command that committed it
    featstore_version: str | None
    rows_added: int | None
    rows_removed: int | None
    files_added: int | None
    files_removed: int | None


def parse_version(entry: dict[str, Any]) -> Version:
    """A `Version` from one entry of delta-rs's `DeltaTable.history()`."""
    metrics = entry.get("operationMetrics") or {}

    def metric(*names: str) -> int | None:
        for name in names:
            if name in metrics:
                return int(metrics[name])
        return None

    removed = metric("num_removed_rows", "num_deleted_rows")
    return Version(
        version=int(entry.get("version", -1)),
        timestamp_ms=int(entry.get("timestamp", 0)),
        operation=str(entry.get("operation", "")),
        command=entry.get("featstore.command"),
        featstore_version=entry.get("featstore.version"),
        rows_added=metric("num_added_rows", "num_output_rows", "num_copied_rows")
        if ROWS_ADDED_KEY not in entry
        else int(entry[ROWS_ADDED_KEY]),
        rows_removed=removed,
        files_added=metric("num_added_files", "numFilesAdded"),
        files_removed=metric("num_removed_files", "numFilesRemoved"),
    )
