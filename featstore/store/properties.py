"""How featstore writes Delta files and commits: the same for every table and command."""

from __future__ import annotations

from typing import Any

import featstore

# Row groups of this many rows: a one-identity lookup decodes one group (a few MB of
# features), not a whole file; DuckDB and delta-rs skip the others by min/max identity.
ROW_GROUP_ROWS = 4096


def writer_properties() -> Any:
    from deltalake import WriterProperties

    return WriterProperties(compression="ZSTD", max_row_group_size=ROW_GROUP_ROWS)


def commit_properties(command: str) -> Any:
    """Every commit records the featstore command and version (`featstore history`)."""
    from deltalake import CommitProperties

    return CommitProperties(
        custom_metadata={
            "featstore.command": command,
            "featstore.version": featstore.__version__,
        }
    )
