"""How featstore writes Delta files and commits: the same for every table and command."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import featstore

# Row groups of this many rows: a one-identity lookup decodes one group (a few MB of
# features), not a whole file; DuckDB and delta-rs skip the others by min/max identity.
ROW_GROUP_ROWS = 4096


def writer_properties() -> Any:
    from deltalake import WriterProperties

    return WriterProperties(compression="ZSTD", max_row_group_size=ROW_GROUP_ROWS)


ROWS_ADDED_KEY = "featstore.rows_added"


def commit_properties(
    command: str, *, rows_added: int | None = None, extra: Mapping[str, str] | None = None
) -> Any:
    """Every commit records the featstore command and version (`featstore history`).

    `rows_added`: for a commit delta-rs reports no metrics of (a transaction of add
    actions written by featstore, `bulk_write`), so that history can count its rows.
    `extra`: more entries for the commit's metadata (the neighbors run's settings).
    """
    from deltalake import CommitProperties

    metadata = {"featstore.command": command, "featstore.version": featstore.__version__}
    if rows_added is not None:
        metadata[ROWS_ADDED_KEY] = str(rows_added)
    metadata.update(extra or {})
    return CommitProperties(custom_metadata=metadata)
