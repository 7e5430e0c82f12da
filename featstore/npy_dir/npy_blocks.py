"""`.npy` files written a block of rows at a time, and read without trusting their header.

`np.save` needs the whole array; here the header that `np.save` would write for the
final shape is written first (`numpy.lib.format`, version 1.0, which `np.save` picks for
these shapes), then the rows are appended as they come: the bytes equal `np.save`'s.
Reading never unpickles (`allow_pickle` stays False) and checks the header against the
file's size before mapping, so a header claiming 10^12 rows is refused, not allocated.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npy_format
from numpy.typing import NDArray

from featstore.errors import InputError, StoreError

# The largest header numpy itself reads without allow_pickle-level trust.
_MAX_HEADER = 10_000


class NpyWriter:
    """Rows of a C-order array of a known final shape, appended block by block."""

    def __init__(self, path: Path, dtype: np.dtype[np.generic], shape: tuple[int, ...]) -> None:
        self.path, self.dtype, self.shape = path, np.dtype(dtype), shape
        self.rows = 0
        self.file: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed in close()
        header = {"descr": npy_format.dtype_to_descr(self.dtype), "fortran_order": False}
        npy_format.write_array_header_1_0(self.file, {**header, "shape": shape})

    def append(self, block: NDArray[np.generic]) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape[1:] != self.shape[1:]:
            raise StoreError(
                f"{self.path.name}: a block of shape {block.shape}, rows {self.shape[1:]}"
            )
        self.file.write(block.tobytes())
        self.rows += len(block)

    def close(self) -> None:
        self.file.close()
        if self.rows != self.shape[0]:
            raise StoreError(
                f"{self.path.name}: {self.rows} rows written, {self.shape[0]} announced; the "
                "store changed while it was exported.\nHint: export again."
            )

    def discard(self) -> None:
        self.file.close()


@dataclass(frozen=True)
class NpyHeader:
    """What an `.npy` header says, once checked against the file."""

    path: Path
    dtype: np.dtype[np.generic]
    shape: tuple[int, ...]
    fortran_order: bool
    offset: int  # where the data starts


class NpyProblem(InputError):
    """An `.npy` file featstore will not read: the field, what was expected and found."""

    def __init__(self, path: Path, field: str, expected: str, actual: str, hint: str) -> None:
        super().__init__(f"{path}: {field}: expected {expected}, actual {actual}.\nHint: {hint}")
        self.field, self.expected, self.actual, self.hint = field, expected, actual, hint


def read_header(path: Path) -> NpyHeader:
    """The header of `path`, refused when it is no numeric `.npy` its size agrees with.

    Raises:
        NpyProblem: not an `.npy` file, an object array (pickled Python objects), or a
            shape whose data the file does not hold.
    """
    try:
        with open(path, "rb") as f:
            version = npy_format.read_magic(f)
            reader = {
                (1, 0): npy_format.read_array_header_1_0,
                (2, 0): npy_format.read_array_header_2_0,
            }.get(version)
            if reader is None:
                raise ValueError(f"unsupported .npy format version {version}")
            shape, fortran, dtype = reader(f, max_header_size=_MAX_HEADER)
            offset = f.tell()
    except (ValueError, OSError, SyntaxError) as exc:
        raise NpyProblem(
            path, "header", "an .npy header (numpy.save)", str(exc).splitlines()[0][:200],
            "write it with numpy.save, or export the directory again",
        ) from exc  # fmt: skip
    if dtype.hasobject:
        raise NpyProblem(
            path, "dtype", "a number (float32 features, float64 keypoints)",
            f"{dtype} (Python objects, which featstore never unpickles)",
            "save the array as numbers: np.save(path, np.asarray(x, dtype=np.float32))",
        )  # fmt: skip
    expected = offset + int(np.prod(shape, dtype=object)) * dtype.itemsize
    size = os.stat(path).st_size
    if size != expected:
        raise NpyProblem(
            path, "shape", f"a shape the file holds ({size - offset} bytes of data)",
            f"{list(shape)} of {dtype}, {expected - offset} bytes",
            "the file is truncated or its header is wrong; write it again",
        )  # fmt: skip
    return NpyHeader(path, dtype, tuple(shape), fortran, offset)


class NpyRows:
    """A checked C-order `.npy` file's rows, read with `os.pread` when asked for.

    Not a memory map: the pages of a mapped file that a reader touches stay resident (and
    count in its RSS) until the kernel needs them, so one pass over a 100,000-row feature
    file would hold it all; these reads leave only the rows asked for.
    """

    def __init__(self, header: NpyHeader) -> None:
        self.header, self.shape, self.dtype = header, header.shape, header.dtype
        self.row_shape = header.shape[1:]
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * header.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, start: int, stop: int) -> NDArray[np.generic]:
        """Rows `start:stop` (clipped to the file) as a fresh array."""
        start, stop = max(0, start), min(stop, len(self))
        count = max(0, stop - start)
        with open(self.header.path, "rb", buffering=0) as f:
            data = os.pread(
                f.fileno(), count * self.row_bytes, self.header.offset + start * self.row_bytes
            )
        return np.frombuffer(data, dtype=self.dtype).reshape(count, *self.row_shape).copy()

    def take(self, rows: NDArray[np.integer]) -> NDArray[np.generic]:
        """The given rows in that order, read as runs of consecutive rows."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), *self.row_shape), dtype=self.dtype)
        if not len(rows):
            return out
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(rows)], strict=True):
            out[lo:hi] = self.read(int(rows[lo]), int(rows[hi - 1]) + 1)
        return out

    def __getitem__(self, key: int | slice) -> NDArray[np.generic]:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            assert step == 1, "whole runs of rows only"
            return self.read(start, stop)
        if not -len(self) <= key < len(self):
            raise IndexError(f"row {key} of {len(self)}")
        key = key % len(self)
        return self.read(key, key + 1)[0]


def open_rows(header: NpyHeader) -> NpyRows:
    """The checked file's rows, read on demand (no copy of the file, no pickle)."""
    return NpyRows(header)
