"""Reading the samples' wide columns straight from a store's Parquet files.

`read_store` (`featstore.dataset.sources`) lets DuckDB choose and order the samples (the
views, `--where`, the identity order) over their small columns only, each row located by
its file and row number (`ModelSnapshot.connect(located=True)`). The wide columns (the
features, the per-frame fields, the image paths) are then read here with pyarrow, file by
file, and gathered into their places in preallocated numpy arrays.

Why not let DuckDB return them, sorted: its ORDER BY carries every feature vector through
the sort and its Arrow export copies them again, which made a cold open read the features
at about a fifth of the speed pyarrow decodes the same column (issue 25's bench). Here a
file's column is decoded once and each value copied once, into its sample's slot.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from featstore.errors import StoreError

if TYPE_CHECKING:
    from featstore.store import ModelSnapshot

Shapes = Mapping[str, tuple[int, ...]]  # stored column -> the shape of one value


# Located rows, the float columns to read of them, and the columns to write into files
# (memory-mapped) rather than memory.
Selection = tuple[pa.Table, Shapes, Mapping[str, Path]]
Columns = tuple[dict[str, NDArray[np.float32]], pa.Array]  # those columns, and image paths


def read_located(snapshot: ModelSnapshot, selections: Sequence[Selection]) -> list[Columns]:
    """For each selection: its float columns and `image_path`, in the order of its rows.

    Args:
        selections: the located rows (`_file`, an index into `snapshot.files`, and `_row`,
            the row in that file; one per sample, in the samples' order) and the stored
            float columns to read with the shape of one value. A column the table does
            not have comes back as NaN. Columns given a file are made there, mapped (a
            million identities' features need not fit in memory twice: the Dataset's cache
            moves the file in).

    Returns:
        Per selection, each column as `[N, *shape]` float32 (null values as NaN), and
        the image paths. Each data file is read once for all selections.
    """
    import pyarrow.parquet as pq

    names = set(snapshot.schema().names)
    plans = [
        _Plan(located, shapes, names, len(snapshot.files), files)
        for located, shapes, files in selections
    ]
    wanted = ["image_path", *sorted({c for plan in plans for c in plan.present})]
    fs = snapshot.table.location.fs
    for f, file in enumerate(snapshot.files):
        if not any(len(plan.rows_in(f)[0]) for plan in plans):
            continue
        with fs.open_input_file(file) as handle:
            parquet = pq.ParquetFile(handle)
            first = 0
            # A row group at a time: its columns come as single arrays (no concatenation)
            # and memory holds one group, not the file.
            for group in range(parquet.num_row_groups):
                rows = parquet.metadata.row_group(group).num_rows
                chosen = [plan.rows_in(f, first, first + rows) for plan in plans]
                if any(len(where) for where, _ in chosen):
                    values = parquet.read_row_group(group, columns=wanted)
                    arrays = {c: values.column(c).chunk(0) for c in wanted}
                    for plan, (where, picked) in zip(plans, chosen, strict=True):
                        plan.gather(arrays, where, picked - first, file)
                first += rows
    return [plan.result() for plan in plans]


class _Plan:
    """One selection's rows by file and row, and the arrays they are gathered into."""

    def __init__(
        self,
        located: pa.Table,
        shapes: Shapes,
        names: set[str],
        files: int,
        mapped: Mapping[str, Path],
    ) -> None:
        n = len(located)
        self.shapes = shapes
        self.present = [c for c in shapes if c in names]
        self.out: dict[str, NDArray[np.float32]] = {}
        for c, shape in shapes.items():
            if c in mapped and n:
                # Raw float32, row after row: the Dataset cache's own features file.
                self.out[c] = np.memmap(mapped[c], mode="w+", dtype=np.float32, shape=(n, *shape))
            else:
                self.out[c] = np.empty((n, *shape), np.float32)
            if c not in self.present:
                self.out[c][...] = np.nan
        self.paths: list[pa.Array] = []
        self.positions: list[NDArray[np.int64]] = []
        file_index = located.column("_file").to_numpy()
        self.row_number = located.column("_row").to_numpy()
        self.order = np.lexsort((self.row_number, file_index))  # by file, then row
        self.sorted_rows = self.row_number[self.order]
        self.bounds = np.searchsorted(file_index[self.order], np.arange(files + 1))

    def rows_in(
        self, f: int, first: int = 0, end: int | None = None
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """The positions (in the selection) of file `f`'s rows in [first, end), and those
        rows, ascending."""
        lo, hi = self.bounds[f], self.bounds[f + 1]
        if end is not None:
            rows = self.sorted_rows[lo:hi]
            lo, hi = lo + np.searchsorted(rows, first), lo + np.searchsorted(rows, end)
        return self.order[lo:hi], self.sorted_rows[lo:hi]

    def gather(
        self,
        arrays: dict[str, pa.Array],
        where: NDArray[np.int64],
        rows: NDArray[np.int64],
        file: str,
    ) -> None:
        """Copy rows `rows` of one row group's `arrays` to positions `where`."""
        if not len(where):
            return
        # A sorted file's group lands in one run of positions: gathered straight into it.
        run = int(where[-1] - where[0]) + 1 == len(where) and bool(np.all(np.diff(where) > 0))
        for column in self.present:
            out = self.out[column]
            shape = self.shapes[column]
            if run:
                gather(
                    arrays[column], rows, shape, file, column, into=out[where[0] : where[-1] + 1]
                )
            else:
                out[where] = gather(arrays[column], rows, shape, file, column)
        self.paths.append(arrays["image_path"].take(pa.array(rows)))
        self.positions.append(where)

    def result(self) -> Columns:
        for values in self.out.values():
            if isinstance(values, np.memmap):
                values.flush()
        n = len(self.row_number)
        if not self.paths:
            return self.out, pa.array([], pa.string())
        inverse = np.empty(n, np.int64)
        inverse[np.concatenate(self.positions)] = np.arange(n)
        return self.out, pa.concat_arrays(self.paths).take(pa.array(inverse))


def gather(
    array: pa.Array,
    rows: NDArray[np.int64],
    shape: tuple[int, ...],
    file: str,
    column: str,
    into: NDArray[np.float32] | None = None,
) -> NDArray[np.float32]:
    """`array[rows]` (nested lists of floats, or a scalar) as `[len(rows), *shape]` float32,
    NaN where a row is null.

    Through the lists' offsets with numpy: Arrow's `take` on nested lists rebuilds every
    level and was half of a cold open. A row's values are contiguous in the innermost
    array, so one row gather copies them when every row starts on a multiple of its size.
    """
    import pyarrow.compute as pc

    valid = (
        array.is_valid().to_numpy(zero_copy_only=False)[rows]
        if array.null_count
        else np.ones(len(rows), bool)
    )
    values = np.empty((len(rows), *shape), np.float32) if into is None else into
    if not valid.any():
        values[...] = np.nan
        return values
    start = np.where(valid, rows, rows[valid][0])  # a null row reads a valid one's slot
    end = start + 1
    level = array
    for _ in shape:  # to the range of each row's values in the innermost array
        offsets = level.offsets.to_numpy()
        start, end = offsets[start], offsets[end]
        level = level.values
    size = int(np.prod(shape))
    if np.any((end - start)[valid] != size):
        raise StoreError(
            f"data file {file}: column {column} holds values of another shape than "
            f"{shape}.\nHint: the file was not written by featstore; extract the model "
            "again into a new --store."
        )
    leaf = level.cast(pa.float32())
    if leaf.null_count:
        leaf = pc.fill_null(leaf, np.float32("nan"))
    flat = leaf.to_numpy(zero_copy_only=False)
    target = values.reshape(len(rows), size)
    if len(flat) % size == 0 and not np.any(start % size):  # whole rows: one gather
        np.take(flat.reshape(-1, size), start // size, axis=0, out=target)
    else:
        target[...] = flat[start[:, None] + np.arange(size)]
    if not valid.all():
        values[~valid] = np.nan
    return values


def _spread(valid: NDArray[np.bool_], shape: tuple[int, ...]) -> NDArray[np.bool_]:
    """`valid` (one flag per row) spread over the inner dimensions of `shape`."""
    return np.broadcast_to(valid.reshape(valid.shape + (1,) * (len(shape) - 1)), shape)


def column_values(column: pa.ChunkedArray, shape: tuple[int, ...]) -> NDArray[np.float32]:
    """A (nested) fixed-size float column (DuckDB's arrays) as `[N, *shape]` float32; nulls
    become NaN (the path for stores read through DuckDB alone: object storage).

    A null row (a frame without a head pose, a field the source lacks) keeps its slot:
    `flatten` would drop it and shift every later row.
    """
    import pyarrow.compute as pc

    array = column.combine_chunks()
    rows = len(array)
    null_rows = array.is_null().to_numpy(zero_copy_only=False)
    while pa.types.is_fixed_size_list(array.type):
        size = array.type.list_size
        array = array.values.slice(array.offset * size, len(array) * size)
    values = pc.fill_null(array.cast(pa.float32()), np.float32("nan"))
    out: NDArray[np.float32] = values.to_numpy(zero_copy_only=False).reshape(rows, *shape)
    if null_rows.any():
        out = out.copy()
        out[null_rows] = np.nan
    return out


def resolve_paths(paths: pa.Array, base: object) -> pa.Array:
    """Stored paths (relative to the extraction's base dir) as absolute posix paths.

    Paths already normal (no `.`/`..` segment, no doubled or leading slash: what featstore
    stores) are joined to the base in one vectorised step; any other goes through
    `posixpath.normpath`, as before.
    """
    import pyarrow.compute as pc

    paths = paths.cast(pa.string())
    if not isinstance(base, str):
        return paths
    root = posixpath.normpath(base)
    irregular = pc.match_substring_regex(paths, r"(^|/)\.{1,2}(/|$)|//|^/|/$|^$")
    joined = pc.binary_join_element_wise(root, paths, "/" if root != "/" else "")
    if not pc.any(irregular).as_py():
        return joined
    mask = irregular.to_numpy(zero_copy_only=False)
    result = joined.to_pylist()
    for i in np.flatnonzero(mask):
        result[i] = posixpath.normpath(posixpath.join(base, paths[int(i)].as_py()))
    return pa.array(result, pa.string())
