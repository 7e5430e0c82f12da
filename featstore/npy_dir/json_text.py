"""The text of `json.dump(obj, f, indent=2, ensure_ascii=False)`, written piece by piece.

The seed writes its metadata with Python's `json` module; another serializer spells
numbers differently (`1e-05`, `88`), so this writes what that module writes: `repr` of
floats, `": "` after keys, `","` between items, every item on its own line, two spaces a
level, `[]` / `{}` when empty. `value_text` lays out one value at a nesting depth (tests
compare it with `json.dumps` on random values); `ObjectWriter` streams a top-level object
whose long lists arrive item by item, into per-list spool files that are joined at the end,
so memory holds one block of rows, whatever their number.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterable
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any, BinaryIO

from featstore.errors import StoreError

_PAD = "  "


def value_text(value: Any, depth: int = 0) -> str:
    """`json.dumps(value, indent=2, ensure_ascii=False)` nested `depth` levels deep."""
    if isinstance(value, str):
        return encode_basestring(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return _float_text(value)
    inner = "\n" + _PAD * (depth + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = (f"{encode_basestring(k)}: {value_text(v, depth + 1)}" for k, v in value.items())
        return "{" + inner + ("," + inner).join(items) + "\n" + _PAD * depth + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        if all(type(v) is float for v in value) and all(map(math.isfinite, value)):
            # The rows of numbers that make up nearly all of the text: one join.
            return (
                "["
                + inner
                + ("," + inner).join(map(float.__repr__, value))
                + ("\n" + _PAD * depth + "]")
            )
        items = (value_text(v, depth + 1) for v in value)
        return "[" + inner + ("," + inner).join(items) + "\n" + _PAD * depth + "]"
    raise TypeError(f"not JSON: {type(value).__name__}")


def _float_text(value: float) -> str:
    # json's own spelling; never reached with NaN here (callers refuse it first).
    if math.isfinite(value):
        return float.__repr__(value)
    return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")


class ObjectWriter:
    """A top-level JSON object with its keys in a fixed order; list values may be streamed.

    `add(key, value)` sets a small value (in any order); `spool(key)` opens a list whose
    items arrive later (`ListSpool.extend`), kept in a file beside the output until
    `close` joins everything in the declared key order.
    """

    def __init__(self, path: Path, keys: Iterable[str]) -> None:
        self.path = path
        self.keys = tuple(keys)
        self.parts: dict[str, str | ListSpool] = {}

    def add(self, key: str, value: Any) -> None:
        assert key in self.keys, key
        self.parts[key] = value_text(value, 1)

    def spool(self, key: str) -> ListSpool:
        assert key in self.keys, key
        spool = ListSpool(self.path.with_name(f".{self.path.name}.{key}.part"))
        self.parts[key] = spool
        return spool

    def close(self) -> None:
        """Write the object (no trailing newline, as `json.dump`) and remove the spools."""
        missing = [key for key in self.keys if key not in self.parts]
        assert not missing, missing
        with open(self.path, "wb") as out:
            out.write(b"{")
            for i, key in enumerate(self.keys):
                part = self.parts[key]
                head = ("," if i else "") + "\n" + _PAD + encode_basestring(key) + ": "
                out.write(head.encode("utf-8"))
                if isinstance(part, ListSpool):
                    part.copy_into(out)
                else:
                    out.write(part.encode("utf-8"))
            out.write(b"\n}" if self.keys else b"}")

    def discard(self) -> None:
        for part in self.parts.values():
            if isinstance(part, ListSpool):
                part.discard()


class ListSpool:
    """The items of one list (at depth 2 of the document), as text in a scratch file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed in copy_into/discard
        self.count = 0

    def extend(self, texts: Iterable[str]) -> None:
        """Append items already laid out at depth 2 (`value_text(item, 2)`)."""
        sep = ",\n" + _PAD * 2
        joined = sep.join(texts)
        if not joined:
            return
        self.file.write(((sep if self.count else "\n" + _PAD * 2) + joined).encode("utf-8"))
        self.count += 1

    def copy_into(self, out: BinaryIO) -> None:
        self.file.close()
        if not self.count:
            out.write(b"[]")
        else:
            out.write(b"[")
            with open(self.path, "rb") as source:
                shutil.copyfileobj(source, out, 1 << 20)
            out.write(("\n" + _PAD + "]").encode("utf-8"))
        self.path.unlink()

    def discard(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


def require_utf8(text: str, what: str) -> str:
    """`text` if it encodes as UTF-8 (the seed's `json.dump` crashes on lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise StoreError(f"{what} {text!r} is not valid UTF-8; JSON cannot hold it.") from exc
    return text
