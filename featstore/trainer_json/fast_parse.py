"""An identity's JSON text parsed by simdjson, its feature vectors straight into numpy.

Feature vectors are nearly all of a trainer JSON (768 numbers a frame). orjson makes a
Python float of each number, and numpy then reads them back one by one; simdjson parses
them into its own buffer and copies a whole vector out at once (`as_buffer`), about twice
as fast for the whole read. Everything else (paths, landmarks, counts) becomes the same
Python values orjson gives.

This is only a faster way to the same value, never a judge: whatever it cannot make
exactly like orjson's value is None here, and the caller parses with orjson instead
(`json_stream`, which also names syntax errors). Cases that go that way:

- anything simdjson refuses (NaN, integers beyond 64 bits, bad UTF-8, lone surrogates,
  syntax errors, nesting deeper than 1024);
- a repeated key (orjson keeps the last, simdjson's lookup the first);
- a feature vector holding anything but numbers.

`as_buffer` flattens nested lists, so a vector written `[[0.1], 0.2, ...]` would pass
for a flat one: the caller compares `FastValue.arrays` with the arrays the scanner
counted in the text (`json_stream.Member.arrays`), and uses orjson where they differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import simdjson

# The keys holding feature vectors: the frontal image's and each frame's.
_VECTOR_KEYS = frozenset({"face_features", "features"})


@dataclass(frozen=True)
class FastValue:
    """An identity's value as orjson gives it, but feature vectors as float64 arrays."""

    value: dict[str, Any]
    arrays: int  # JSON arrays in the text, as the scanner counts them when nothing hides


def fast_parse(parser: simdjson.Parser, text: bytes) -> FastValue | None:
    """The identity `text` (one JSON object), or None when orjson must parse it."""
    try:
        document = parser.parse(text)
        if not isinstance(document, simdjson.Object):
            return None
        counter = _Counter()
        value = counter.object(document)
        del document  # the parser may be reused only once no view into it is left
        return None if value is None else FastValue(value, counter.arrays)
    except (ValueError, TypeError, RuntimeError, KeyError):  # simdjson's errors
        return None


class _Counter:
    """Converts simdjson values to Python ones, counting the arrays met."""

    def __init__(self) -> None:
        self.arrays = 0

    def object(self, node: simdjson.Object) -> dict[str, Any] | None:
        keys = list(node.keys())
        if len(set(keys)) != len(keys):
            return None
        out: dict[str, Any] = {}
        for key in keys:
            item = node[key]
            if key in _VECTOR_KEYS and isinstance(item, simdjson.Array):
                self.arrays += 1
                out[key] = np.frombuffer(item.as_buffer(of_type="d"), dtype=np.float64)
            elif key == "video_data" and isinstance(item, simdjson.Array):
                self.arrays += 1
                frames = [self.any(frame) for frame in item]
                if any(frame is _REFUSED for frame in frames):
                    return None
                out[key] = frames
            else:
                converted = self.any(item)
                if converted is _REFUSED:
                    return None
                out[key] = converted
        return out

    def any(self, node: Any) -> Any:
        if isinstance(node, simdjson.Object):
            converted = self.object(node)
            return _REFUSED if converted is None else converted
        if isinstance(node, simdjson.Array):
            value = node.as_list()
            self.arrays += _lists_in(value)
            return value
        return node  # a string, number, bool or null: already Python's


def _lists_in(value: list[Any]) -> int:
    """The lists in a nested Python list, itself included (and those in its dicts)."""
    count = 1
    for item in value:
        if type(item) is list:
            count += _lists_in(item)
        elif type(item) is dict:
            count += sum(_lists_in(v) for v in item.values() if type(v) is list)
    return count


_REFUSED = object()
