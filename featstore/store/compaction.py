"""Compaction: a table's rows rewritten into large files sorted by (identity, role,
frame_index), in one commit.

The rows are the same; only their files change. The commit is an overwrite based on the
snapshot the files were listed from, so a concurrent commit makes it fail rather than be
lost. DuckDB sorts out of core (a memory limit, spilling to a temporary folder), so a table
larger than memory compacts too. delta-rs's own `optimize.z_order(["identity"])` sorts by
identity only, not by role and frame within an identity, hence this.
"""

from __future__ import annotations

import tempfile
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from featstore.store.location import StoreLocation

if TYPE_CHECKING:
    from deltalake import DeltaTable

MEMORY_LIMIT = "1GB"  # DuckDB's sort spills to disk beyond this
BATCH_ROWS = 4096


def sorted_rewrite(
    table: DeltaTable,
    files: list[str],
    location: StoreLocation,
    *,
    writer_properties: Any,
    commit_properties: Any,
) -> None:
    """Overwrite `table` (at its snapshot) with the rows of `files`, sorted."""
    import duckdb
    from deltalake import write_deltalake

    schema = pa.schema(table.schema().to_arrow())
    with tempfile.TemporaryDirectory(prefix="featstore-compact-") as spill:
        con = duckdb.connect(
            config={"memory_limit": MEMORY_LIMIT, "temp_directory": spill, "threads": 2}
        )
        try:
            if location.local is not None:
                listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
                source = f"read_parquet([{listed}], hive_partitioning = false)"
            else:
                import pyarrow.dataset as pads

                con.register(
                    "_table", pads.dataset(files, filesystem=location.fs, format="parquet")
                )
                source = "_table"
            columns = ", ".join('"' + n.replace('"', '""') + '"' for n in schema.names)
            ordered = con.sql(
                f"SELECT {columns} FROM {source} "
                "ORDER BY identity, role, frame_index NULLS FIRST, image_path"
            ).to_arrow_reader(BATCH_ROWS)
            write_deltalake(
                table,
                ordered.cast(schema),
                mode="overwrite",
                writer_properties=writer_properties,
                commit_properties=commit_properties,
            )
        finally:
            con.close()
