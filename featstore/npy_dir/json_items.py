"""A JSON object read key by key, its list values item by item, in memory of one item.

The seed's metadata files hold one list per field with a row per image (a 100,000-frame
directory has ~1 GB of JSON text): `json.load` would hold it all as Python objects. Here
the top-level object is walked with `json.JSONDecoder.raw_decode` over a sliding 1 MiB
window: each top-level value that is not a list, and each item of a list, is decoded on
its own and handed to the caller. Text that is not UTF-8 is refused; NaN and Infinity are
decoded (as Python's `json` does) for the caller's checks to name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from featstore.errors import InputError

_CHUNK = 1 << 20
_WS = " \t\n\r"


class ListItems:
    """The items of one top-level list, read as they are iterated (once)."""

    def __init__(self, reader: _Reader) -> None:
        self.reader = reader
        self._items = self._read()

    def __iter__(self) -> Iterator[Any]:
        return self._items

    def _read(self) -> Iterator[Any]:
        r = self.reader
        if r.peek() == "]":
            r.pos += 1
            return
        while True:
            yield r.value()
            char = r.take()
            if char == "]":
                return
            if char != ",":
                r.fail(f"expected ',' or ']' in a list, found {char!r}")


def object_items(path: Path) -> Iterator[tuple[str, Any]]:
    """(key, value) of the top-level object in file order; a list value is a `ListItems`
    that must be iterated (or not) before the next key is asked for.

    Raises:
        InputError: not UTF-8, not JSON, not an object, a repeated key (file, offset).
    """
    try:
        with open(path, encoding="utf-8", errors="strict", newline="") as f:
            reader = _Reader(path, f)
            yield from reader.items()
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start} of a chunk).\n"
            "Hint: the seed writes UTF-8 (json.dump with ensure_ascii=False); write it again."
        ) from exc


class _Reader:
    def __init__(self, path: Path, f: TextIO) -> None:
        self.path, self.f = path, f
        self.buf, self.pos, self.eof, self.read = "", 0, False, 0
        self.decoder = json.JSONDecoder()

    def fill(self) -> bool:
        if self.eof:
            return False
        chunk = self.f.read(_CHUNK)
        self.read += self.pos
        self.buf, self.pos = self.buf[self.pos :] + chunk, 0
        self.eof = not chunk
        return bool(chunk)

    def skip(self) -> None:
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WS:
                self.pos += 1
            if self.pos < len(self.buf) or not self.fill():
                return

    def peek(self) -> str:
        self.skip()
        return self.buf[self.pos] if self.pos < len(self.buf) else ""

    def take(self) -> str:
        char = self.peek()
        self.pos += len(char)
        return char

    def value(self) -> Any:
        self.skip()
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if self.fill():
                    continue
                self.fail(exc.msg)
            if end == len(self.buf) and self.fill():
                continue  # a number may go on in the next chunk
            self.pos = end
            return value

    def fail(self, why: str) -> None:
        raise InputError(
            f"{self.path}: not valid JSON near character {self.read + self.pos} ({why}).\n"
            "Hint: the file is truncated or was edited by hand; export it again."
        )

    def items(self) -> Iterator[tuple[str, Any]]:
        if self.take() != "{":
            self.fail("expected a JSON object '{'")
        seen: set[str] = set()
        if self.peek() == "}":
            self.pos += 1
        else:
            while True:
                key = self.value()
                if not isinstance(key, str):
                    self.fail("expected a key string")
                if key in seen:
                    self.fail(f"the key {key!r} appears twice")
                seen.add(key)
                if self.take() != ":":
                    self.fail("expected ':' after a key")
                if self.peek() == "[":
                    self.pos += 1
                    items = ListItems(self)
                    yield key, items
                    for _ in items:  # what the caller did not read is skipped
                        pass
                else:
                    yield key, self.value()
                char = self.take()
                if char == "}":
                    break
                if char != ",":
                    self.fail(f"expected ',' or '}}' after a value, found {char!r}")
        if self.peek():
            self.fail("text after the object")
