"""What `migrate` checks of a version-1 model folder before it writes or deletes anything.

A version-1 partition is `identity=<name>/data.parquet`, one readable Parquet file whose
rows are all of `<name>`. Anything else (a file by another name, a file that cannot be
read, rows of another identity, a stray file) is refused by name: migrating it would lose
it (the old folders are deleted after the commit) or mislabel rows, so the user decides.
"""

from __future__ import annotations

from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq

from featstore.errors import StoreError
from featstore.store.location import StoreLocation

V1_DATA = "data.parquet"
V1_PROVENANCE = "_provenance.json"
_SHOWN = 10


def check_partitions(location: StoreLocation, folder: str, files: list[str]) -> None:
    """Refuse the model folder unless every entry is a partition migrate understands.

    Args:
        folder: the model's folder (`model=<m>`).
        files: its `identity=<name>/data.parquet` files.

    Raises:
        StoreError: naming each entry not understood and why; nothing has changed.
    """
    problems: list[str] = []
    for key, _ in location.list_files(folder):
        if key in files or key == V1_PROVENANCE:
            continue
        if "/" not in key and key.endswith(".parquet"):
            continue  # a data file of a killed migration (no table yet): never committed
        problems.append(f"{key}: not a version-1 partition file (identity=<name>/{V1_DATA})")
    for key in files:
        problem = _partition_problem(location, folder, key)
        if problem is not None:
            problems.append(f"{key}: {problem}")
    if problems:
        shown = "\n  ".join(problems[:_SHOWN])
        more = f"\n  ... and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        raise StoreError(
            f"{location.describe(folder)}: migrate does not understand {len(problems)} "
            f"entr{'y' if len(problems) == 1 else 'ies'}, and changed nothing:\n  {shown}"
            f"{more}\nHint: move each out of the store (or restore it from a backup), then "
            "run `featstore migrate` again."
        )


def read_partition(
    location: StoreLocation, folder: str, key: str, columns: list[str] | None = None
) -> tuple[pa.Table, dict[bytes, bytes]]:
    """A partition's rows and its file's key-value metadata.

    Raises:
        StoreError: the file cannot be read, named.
    """
    try:
        parquet = pq.ParquetFile(location.path(f"{folder}/{key}"), filesystem=location.fs)
        return parquet.read(columns=columns), dict(parquet.metadata.metadata or {})
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(
            f"{location.describe(f'{folder}/{key}')} cannot be read: {_first_line(exc)}\n"
            "Hint: restore it from a backup, or move its identity=... folder out of the "
            "store, then run `featstore migrate` again."
        ) from exc


def _partition_problem(location: StoreLocation, folder: str, key: str) -> str | None:
    partition = key.split("/", 1)[0][len("identity=") :]
    try:
        rows, _ = read_partition(location, folder, key, ["identity"])
    except StoreError as exc:
        return f"cannot be read ({_first_line(exc.__cause__ or exc)})"
    found = sorted(set(rows.column("identity").to_pylist()))
    if found and found != [partition] and found != [unquote(partition)]:
        listed = ", ".join(repr(name) for name in found[:3])
        return f"holds rows of {listed}, not of {partition!r} as its folder says"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
