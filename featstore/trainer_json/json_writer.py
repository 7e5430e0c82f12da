"""Writing the trainer's JSON: one identity at a time, indented like `json.dumps`, and
atomically (`<out>.tmp-<pid>` renamed over `out`).

Floats are spelled as the seed's writer spells them (`json.dump` of `ndarray.tolist()`):
each float32 as Python's `repr` of its exact double (`0.10000000149011612`, not `0.1`), so
the seed's trainer, which reads with `json.load` (float64) and computes its residual in
float64, gets the float32 values exactly (docs/formats.md). orjson writes the float64
arrays; it spells a double as Python does except below 1e-4 and from 1e16 on (`1e-7` where
Python writes `1e-07`, `0.00001` for `1e-05`), so those few values go in as `repr` text
(`orjson.Fragment`). The file is ~1.7 times the shortest-float32 one and written ~3 times
slower (still ~10 times faster than `json.dump`); see README "export-json".
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import orjson

from featstore.errors import InputError
from featstore.store.paths import AtomicPath

# More spaces a level than anyone reads; the bound keeps `--indent 100000000` from
# asking for gigabytes of spaces per line (the file grows by indent x depth per line).
MAX_INDENT = 32


def check_indent(indent: int | None) -> None:
    """Refuse an `--indent` that is no whole number in 0..MAX_INDENT (None: compact)."""
    if indent is None:
        return
    if isinstance(indent, bool) or not isinstance(indent, int):
        raise InputError(f"--indent must be a whole number of spaces, got {indent!r}.")
    if not 0 <= indent <= MAX_INDENT:
        raise InputError(
            f"--indent must be 0 to {MAX_INDENT} spaces a level, got {indent}.\n"
            "Hint: leave it out for a compact file, or use e.g. --indent 2."
        )


@dataclass
class Document:
    """The bytes of the document, piece by piece, and what they hold."""

    chunks: Iterator[bytes]
    counts: WriteCounts


def document(entries: Iterable[tuple[str, dict[str, Any]]], indent: int | None) -> Document:
    check_indent(indent)
    counts = WriteCounts()

    def chunks() -> Iterator[bytes]:
        options = orjson.OPT_SERIALIZE_NUMPY | (orjson.OPT_INDENT_2 if indent is not None else 0)
        separator = b""
        yield b"{"
        for identity, value in entries:
            key = orjson.dumps(identity)
            body = orjson.dumps(seed_spelling(value), option=options)
            if indent is None:
                yield separator + key + b":" + body
            else:
                pad = b"\n" + b" " * indent
                yield separator + pad + key + b": " + reindent(body, indent, depth=1)
            separator = b","
            counts.identities += 1
            video = value.get("video_data", value.get("video_images", ()))
            counts.frames += len(video)
        yield b"\n}" if indent is not None and counts.identities else b"}"

    return Document(chunks(), counts)


def seed_spelling(value: Any) -> Any:
    """`value` with its floats as float64 (and `repr` text where orjson would spell them
    otherwise): what `json.dumps` of the float32 values' `tolist()` writes, byte for byte."""
    if isinstance(value, dict):
        return {k: seed_spelling(v) for k, v in value.items()}
    if isinstance(value, list):
        return [seed_spelling(v) for v in value]
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return _float_array(value.astype(np.float64))
    if isinstance(value, np.floating):
        return _float_array(np.asarray(value, dtype=np.float64)[None])[0]
    return value


def _float_array(array: np.ndarray) -> Any:
    magnitude = np.abs(array)
    # Where orjson's spelling and Python's differ (exponent form and padding).
    odd = ((magnitude < 1e-4) & (magnitude > 0)) | (magnitude >= 1e16)
    if not odd.any():
        return array
    flat = array.ravel().tolist()
    for i in np.flatnonzero(odd.ravel()).tolist():
        flat[i] = orjson.Fragment(repr(flat[i]))
    if array.ndim == 1:
        return flat
    return np.asarray(flat, dtype=object).reshape(array.shape).tolist()


def reindent(data: bytes, indent: int, *, depth: int = 0) -> bytes:
    """orjson's 2-space indented JSON with `indent` spaces a level, nested `depth` levels.

    The result is what `json.dumps(value, indent=indent)` lays out (orjson already puts
    every element on its own line and `": "` after keys; only the spaces differ). JSON
    strings cannot hold a raw newline, so the spaces after each newline are indentation.
    """
    if indent != 2:
        deepest = 0
        while b"\n" + b"  " * (deepest + 1) in data:
            deepest += 1
        # Deepest first, through a marker byte (NUL never appears raw in JSON), so a
        # shallower pattern never matches the start of a line already converted.
        for level in range(deepest, 0, -1):
            data = data.replace(b"\n" + b"  " * level, b"\n" + b"\0" * level)
        data = data.replace(b"\0", b" " * indent)
    if depth:
        data = data.replace(b"\n", b"\n" + b" " * (indent * depth))
    return data


class AtomicWriter:
    """Write to `<out>.tmp-<pid>` beside `out`; rename over `out` once complete (`AtomicPath`).

    The pid alone names the temporary, so that a later export can tell a killed run's
    leftover (its pid is gone) from a live one's and remove it.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.target = AtomicPath(out, suffix=f"tmp-{os.getpid()}")
        # Beside the file replaced (a symlink's target) is where earlier runs left theirs.
        _remove_dead_temporaries(self.target.target or out)
        self.file: BinaryIO | None = None
        try:
            self.file = open(self.target.tmp, "wb")  # noqa: SIM115 - closed in commit/discard
        except OSError as exc:
            raise InputError(
                f"cannot write --out {out}: {exc.strerror or exc}.\n"
                "Hint: choose a folder you can write to."
            ) from exc

    def write(self, document: Document) -> WriteCounts:
        assert self.file is not None
        # Errors reading the store come out of `document.chunks`; only writes are ours.
        for chunk in document.chunks:
            self._guard(self.file.write, chunk)
        self._guard(self.file.flush)
        self._guard(os.fsync, self.file.fileno())
        return document.counts

    def _guard(self, call: Callable[..., object], *args: Any) -> None:
        try:
            call(*args)
        except OSError as exc:
            raise InputError(
                f"cannot write --out {self.out}: {exc.strerror or exc}.\nNothing was written "
                "there (the partial file is deleted) and the store is unchanged. Hint: free "
                "space (or choose another --out) and run again."
            ) from exc

    def commit(self) -> int:
        assert self.file is not None
        self.file.close()
        size = self.target.tmp.stat().st_size
        self._guard(self.target.commit)  # removes the temporary when it fails
        return size

    def discard(self) -> None:
        if self.file is not None:
            # On a full disk closing fails too (it flushes the buffer): the temporary must
            # go all the same, and the write's own error is the one to report.
            with contextlib.suppress(OSError):
                self.file.close()
        self.target.discard()


@dataclass
class WriteCounts:
    identities: int = 0
    frames: int = 0


def _remove_dead_temporaries(out: Path) -> None:
    """Delete `<out>.tmp-<pid>` files that killed runs of this command left beside `out`
    (a live pid's file is another export writing at this moment: kept)."""
    prefix = f"{out.name}.tmp-"
    try:
        names = os.listdir(out.parent)
    except OSError:
        return
    for name in names:
        pid = name[len(prefix) :]
        if name.startswith(prefix) and pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                (out.parent / name).unlink()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
