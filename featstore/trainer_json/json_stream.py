"""A trainer JSON read once, identity by identity, in memory bounded by the largest one.

    with open(path, "rb") as raw:
        for member in read_members(raw):
            member.name, member.value   # one top-level key and its parsed value

The file is one object keyed by identity. A scanner finds each member's byte span and
orjson parses the span: nothing but the current identity is held, whatever the file's
size (the seed's files reach several GB).

How the scanner is fast in Python: each chunk (128 KiB) is mapped to byte classes with
`bytes.translate` (quotes, backslashes, brackets; everything else 0), numpy finds the
non-zero bytes eight at a time, which brackets lie outside strings and the running depth;
only the few events where the depth crosses 1 <-> 2 (an identity's value starting or
ending) reach Python. Numbers, the bulk of the file, are never looked at by the scanner;
parsing them is orjson's (floats to float64 correctly rounded; float32 rounding is
`identity_rows.float32`'s), or that of a quicker parser the caller passes (`fast`, see
`fast_parse`), for which the scanner also counts the arrays in each span.

What orjson refuses in a span is parsed again with Python's `json` (span-sized), which
accepts `NaN` / `Infinity` (Python's `json.dump` writes them), so that the checks name
the identity and field holding them rather than a bare syntax error. Where both refuse,
the error gives the file's line and column. A value nested deeper than orjson's 1024
levels is refused, never recursed into.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import IO, Any, Protocol

import numpy as np
import orjson
from numpy.typing import NDArray

CHUNK = 1 << 17  # small enough to keep the memory flat, big enough for numpy to pay
SNIPPET = 20  # characters shown either side of an error
# Byte classes, for bytes.translate: 1 quote, 2 backslash, 3 '{', 4 '[', 5 '}' or ']'.
_CLASSES = bytes(
    {ord('"'): 1, ord("\\"): 2, ord("{"): 3, ord("["): 4, ord("}"): 5, ord("]"): 5}.get(b, 0)
    for b in range(256)
)
_OFFSETS = np.arange(8, dtype=np.int64)
_BLANK = b" \t\r\n"
_CONTROL = re.compile(rb"[\x00-\x1f]")
_BLANK_TO_END = re.compile(rb"[ \t\r\n]*\Z")
# Integers longer than this go to float (inf beyond float64), never to a Python int:
# a feature `1` followed by 400 zeros becomes a named non-finite value, not OverflowError.
_INT_DIGITS = 300
# What lies between two identities' values: `, "key" :` (no comma before the first).
# Unrolled (`"[^"\\]*(?:\\.[^"\\]*)*"`), never an alternation per character: re keeps
# a backtracking frame per repetition of a group, ~170 bytes a character of a long key.
_STRING = rb'"[^"\\]*(?:\\.[^"\\]*)*"'
_KEY = re.compile(rb"[ \t\r\n]*(,)?[ \t\r\n]*(" + _STRING + rb")[ \t\r\n]*:[ \t\r\n]*", re.S)
# A member whose value is a scalar (no brackets), found in such a gap.
_SCALAR = rb"(?:" + _STRING + rb"|[^,\s\"{}\[\]:]+)"
_SCALAR_MEMBER = re.compile(
    rb"[ \t\r\n]*(,)?[ \t\r\n]*(" + _STRING + rb")[ \t\r\n]*:[ \t\r\n]*(" + _SCALAR + rb")"
    rb"[ \t\r\n]*(?=,|\Z)",
    re.S,
)


class BinaryReader(Protocol):
    """What the scanner needs of a file: `read`."""

    def read(self, size: int = -1, /) -> bytes: ...


class JsonTextError(Exception):
    """The file is not a JSON object: what is wrong and where (1-based line and column).

    Attributes:
        kind: "syntax", "truncated", "top-level" or "encoding".
        identity: the identity whose value holds the error, when known.
    """

    def __init__(
        self,
        kind: str,
        detail: str,
        line: int,
        column: int,
        identity: str | None = None,
        offset: int = 0,
    ) -> None:
        where = f"line {line}, column {column}"
        super().__init__(f"{detail} at {where}")
        self.kind, self.detail, self.line, self.column = kind, detail, line, column
        self.identity = identity
        self.where = where
        self.offset = offset  # in the file, in bytes


@dataclass(frozen=True)
class Member:
    """One top-level member: the identity and its value.

    `name` is None when the key is not valid Unicode (a lone surrogate such as
    `"\\ud800"`, which Python's `json.dump` writes for a file name that is not UTF-8);
    `key_text` is the key as written and `key_error` says why.
    """

    name: str | None
    value: Any
    text: bytes  # the value's JSON text, to parse again (numbers as decimals)
    line: int  # the key's line
    key_text: str
    key_error: str | None = None
    key_bytes: bytes = b""  # the key as written, quotes included
    key_offset: int = 0  # in the file, in bytes
    arrays: int = 0  # JSON arrays in the value's text (its '[' outside strings)


def read_members(
    raw: BinaryReader, *, start: int = 0, fast: Callable[[bytes], Any] | None = None
) -> Iterator[Member]:
    """The members of the file's top-level object, in file order.

    Args:
        raw: the file, positioned at `start` (after a BOM the caller dealt with).
        start: the file offset of `raw`'s position (for error positions).
        fast: a quicker parser to try first on each value's text (see
            `fast_parse`): what it returns (not None) is the member's value.

    Raises:
        JsonTextError: the text is not a JSON object (the line and column say where),
            or it stops inside it (truncated).
    """
    yield from _Scanner(raw, start, fast).members()


class _Scanner:
    def __init__(self, raw: BinaryReader, start: int, fast: Callable[[bytes], Any] | None) -> None:
        self.raw = raw
        self.fast = fast
        self.buf = bytearray()
        self.base = start  # file offset of buf[0]
        self.lines = 0  # newlines before buf[0] (`start` bytes are a BOM at most)
        self.column0 = 0  # characters between the last newline before buf[0] and buf[0]
        self.depth = 0
        self.in_string = False
        self.held = b""  # trailing backslashes of the last chunk, scanned with the next
        self.pending = 0  # buffer offset where the gap before the next value starts
        self.value_start = -1
        self.squares = 0  # '[' outside strings so far
        self.squares_at_value = 0  # ... before the current value started
        self.count = 0  # members read
        # (buffer offset, newlines before it in buf, its column; 0: unknown): positions,
        # counted on from the last one.
        self.cursor = (0, 0, 0)

    # -- positions ---------------------------------------------------------------------

    def position(self, offset: int) -> tuple[int, int]:
        """(line, column) of a buffer offset, both 1-based; the column counts characters.

        Counted on from the last position asked for (members come in file order), so a
        file of many members on one line costs linear time, not a rescan of the line.
        """
        at, before, column = self.cursor if self.cursor[0] <= offset else (0, 0, 0)
        newlines = _newlines(self.buf, at, offset)
        if newlines or not column:
            line_start = self.buf.rfind(b"\n", at if newlines else 0, offset) + 1
            column = _characters(self.buf, line_start, offset) + 1
            if line_start == 0 and before + newlines == 0:
                column += self.column0
        else:
            column += _characters(self.buf, at, offset)
        before += newlines
        self.cursor = (offset, before, column)
        return self.lines + before + 1, column

    def error(self, kind: str, detail: str, offset: int, identity: str | None = None) -> Exception:
        line, column = self.position(offset)
        snippet = bytes(self.buf[max(offset - SNIPPET, 0) : offset + SNIPPET])
        near = json.dumps(snippet.decode("utf-8", "replace"), ensure_ascii=False)
        return JsonTextError(
            kind, f"{detail}, near {near}", line, column, identity, self.base + offset
        )

    # -- scanning ----------------------------------------------------------------------

    def members(self) -> Iterator[Member]:
        top_open = self.first_brace()
        self.pending = top_open + 1
        while True:
            chunk = self.raw.read(CHUNK)
            data = self.held + chunk if self.held else chunk
            # Trailing backslashes wait for the next chunk: they may escape its first quote.
            stripped = data.rstrip(b"\\") if chunk else data
            self.held = data[len(stripped) :]
            if stripped:
                at = len(self.buf)
                self.buf += stripped
                done = yield from self.scan(stripped, at)
                if done is not None:
                    self.check_tail(done)
                    return
                self.trim()
            if not chunk:
                break
        if self.depth == 0:
            raise self.error("top-level", "the top-level object is not closed", len(self.buf))
        raise self.error(
            "truncated",
            "the file stops inside the top-level object (truncated?)",
            len(self.buf),
        )

    def first_brace(self) -> int:
        """Read up to the first non-blank byte, which must open the top-level object."""
        while True:
            chunk = self.raw.read(1 << 16)
            if not chunk:
                raise self.error("top-level", "expected a JSON object, found no value", 0)
            self.buf += chunk
            stripped = self.buf.lstrip(_BLANK)
            if stripped:
                offset = len(self.buf) - len(stripped)
                if stripped[:1] != b"{":
                    found = bytes(stripped[:1]).decode("utf-8", "replace")
                    raise self.error(
                        "top-level",
                        f"expected '{{' (an object keyed by identity), found {found!r}",
                        offset,
                    )
                self.depth = 1
                # Scan the rest of what was read like any chunk.
                rest = bytes(self.buf[offset + 1 :])
                del self.buf[offset + 1 :]
                self.held = rest
                return offset

    def scan(self, chunk: bytes, at: int) -> Generator[Member, None, int | None]:
        """Find the depth 1 <-> 2 transitions in `chunk` (at buffer offset `at`).

        Returns (through StopIteration) the buffer offset after the top-level object's
        closing brace when the chunk holds it, else None.
        """
        where, kinds = _events(chunk)
        quotes = where[kinds == 1]
        if (kinds == 2).any():
            quotes = quotes[[not _escaped(chunk, int(q)) for q in quotes]]
        brackets = where[kinds >= 3]
        # A bracket is inside a string when an odd number of quotes precede it.
        inside = (np.searchsorted(quotes, brackets) + self.in_string) % 2 == 1
        brackets = brackets[~inside]
        classes = kinds[kinds >= 3][~inside]
        # int8/int32: a chunk of nothing but brackets stays a few MB.
        steps = np.where(classes <= 4, np.int8(1), np.int8(-1))
        depth = self.depth + np.cumsum(steps, dtype=np.int32)
        squares = np.cumsum(classes == 4, dtype=np.int32)  # '[' in the chunk up to each
        squares_before = self.squares
        self.in_string = (len(quotes) + self.in_string) % 2 == 1
        self.depth = int(depth[-1]) if len(depth) else self.depth
        self.squares += int(squares[-1]) if len(squares) else 0
        opens = (steps == 1) & (depth == 2)
        closes = (steps == -1) & (depth <= 1)
        for i in np.flatnonzero(opens | closes):
            offset = at + int(brackets[i])
            squares_so_far = squares_before + int(squares[i])
            if opens[i]:
                self.value_start = offset
                self.squares_at_value = squares_so_far - int(classes[i] == 4)
                continue
            if depth[i] == 0:  # the top-level object closes
                yield from self.scalar_members(self.pending, offset, last=True)
                return offset + 1
            yield from self.member(offset + 1, squares_so_far - self.squares_at_value)
        return None

    def member(self, end: int, arrays: int) -> Iterator[Member]:
        """The member whose value spans buf[value_start:end]; the gap before holds its key."""
        start, self.value_start = self.value_start, -1
        gap = bytes(self.buf[self.pending : start])
        key = _KEY.fullmatch(gap)
        if key is None:
            # Scalar members before this one (`"a": 5,`), then this one's key.
            split = _last_key(gap)
            if split is None:
                raise self.error("syntax", "expected '\"<identity>\": ' here", self.pending)
            yield from self.scalar_members(self.pending, self.pending + split.start(), last=False)
            key_bytes, key_at = split.group(2), self.pending + split.start(2)
        else:
            self.check_comma(key, self.pending)
            key_bytes, key_at = key.group(2), self.pending + key.start(2)
        self.pending = end
        yield self.parse(key_bytes, key_at, start, end, arrays)

    def scalar_members(self, start: int, end: int, *, last: bool) -> Iterator[Member]:
        """Members with scalar values in buf[start:end] (no brackets in there)."""
        gap = bytes(self.buf[start:end])
        position = 0
        while not _BLANK_TO_END.match(gap, position):  # no slice: linear in the members
            match = _SCALAR_MEMBER.match(gap, position)
            if match is None:
                rest = gap[position:].lstrip(_BLANK)
                if last and rest.strip(_BLANK) == b",":
                    detail = "a trailing comma before the closing '}'"
                else:
                    detail = "expected '\"<identity>\": <value>' here"
                raise self.error("syntax", detail, start + len(gap) - len(rest))
            self.check_comma(match, start)
            key_at = start + match.start(2)
            yield self.parse(match.group(2), key_at, start + match.start(3), start + match.end(3))
            position = match.end()
        if not last:
            self.pending = end

    def check_comma(self, match: re.Match[bytes], start: int) -> None:
        """Members are separated by one comma: none before the first, one before others."""
        if (match.group(1) is None) != (self.count == 0):
            what = "a ',' before" if self.count else "no ',' before the first"
            raise self.error("syntax", f"expected {what} member", start + match.start(2))

    def parse(self, key: bytes, key_at: int, start: int, end: int, arrays: int = 0) -> Member:
        self.count += 1
        with memoryview(self.buf) as view:
            text = bytes(view[start:end])
        key_text = key.decode("utf-8", "replace")
        line = self.position(key_at)[0]
        name: str | None
        key_error = None
        try:
            name = _plain_key(key)
            if name is None:
                name = orjson.loads(key)
        except orjson.JSONDecodeError as exc:
            name, key_error = None, str(exc).split(":")[0]
        value = self.fast(text) if self.fast is not None else None
        if value is None:
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                value = self.lenient(text, exc, start, name or key_text)
        return Member(name, value, text, line, key_text, key_error, key, self.base + key_at, arrays)

    def lenient(self, text: bytes, exc: orjson.JSONDecodeError, start: int, who: str) -> Any:
        """Python's json for what orjson refuses (NaN, Infinity, huge integers), else an error."""
        message = str(exc)
        # Not for what Python's json accepts but the store cannot hold (lone surrogates).
        if not any(word in message for word in ("depth", "recursion", "surrogate", "UTF-8")):
            try:
                return json.loads(text, parse_int=parse_int)
            except (ValueError, RecursionError):
                pass
        try:
            prefix = text.decode("utf-8")[: exc.pos]
            offset = start + len(prefix.encode("utf-8"))
            detail = str(exc).split(": line ")[0]
        except UnicodeDecodeError as bad:
            offset, detail = start + bad.start, "bytes that are not UTF-8"
            raise self.error("encoding", detail, offset, who) from None
        if "recursion" in detail or "depth" in detail:
            detail = "a value nested more than 1024 levels deep"
        raise self.error("syntax", f"{detail} (in identity {who!r})", offset, who) from None

    def check_tail(self, end: int) -> None:
        """After the top-level object: blanks only."""
        self.buf += self.held
        self.held = b""
        while True:
            rest = bytes(self.buf[end:])
            junk = rest.lstrip(_BLANK)
            if junk:
                offset = end + len(rest) - len(junk)
                raise self.error("syntax", "text after the top-level object", offset)
            more = self.raw.read(1 << 16)
            if not more:
                return
            self.buf += more

    def trim(self) -> None:
        """Drop what was consumed: the buffer holds the current identity only."""
        keep = self.value_start if self.value_start >= 0 else self.pending
        keep = min(keep, self.pending)
        if keep <= 0:
            return
        newlines = _newlines(self.buf, 0, keep)
        self.lines += newlines
        last = self.buf.rfind(b"\n", 0, keep)
        self.column0 = _characters(self.buf, last + 1, keep) + (0 if newlines else self.column0)
        del self.buf[:keep]
        self.cursor = (0, 0, 0)
        self.base += keep
        self.pending -= keep
        if self.value_start >= 0:
            self.value_start -= keep


def _events(chunk: bytes) -> tuple[NDArray[np.int64], NDArray[np.uint8]]:
    """Offsets and classes of the chunk's quotes, backslashes and brackets.

    Looked for eight bytes at a time: they are sparse (numbers are the bulk of a file).
    """
    classes = chunk.translate(_CLASSES)
    whole = len(classes) // 8
    hits = np.flatnonzero(np.frombuffer(classes, dtype=np.uint64, count=whole))
    candidates = np.concatenate(
        [(hits[:, None] * 8 + _OFFSETS).ravel(), np.arange(whole * 8, len(classes))]
    )
    codes = np.frombuffer(classes, dtype=np.uint8)[candidates]
    keep = codes != 0
    return candidates[keep], codes[keep]


def _newlines(buf: bytearray, start: int, end: int) -> int:
    end = min(end, len(buf))
    if end <= start:
        return 0
    view = np.frombuffer(buf, dtype=np.uint8, count=end - start, offset=start)
    return int(np.count_nonzero(view == 10))


def _characters(buf: bytearray, start: int, end: int) -> int:
    """UTF-8 characters in buf[start:end]: the bytes that do not continue a character."""
    end = min(end, len(buf))
    if end <= start:
        return 0
    view = np.frombuffer(buf, dtype=np.uint8, count=end - start, offset=start)
    return int(np.count_nonzero((view & 0xC0) != 0x80))


def _escaped(chunk: bytes, index: int) -> bool:
    """True when the quote at `index` follows an odd run of backslashes."""
    run = 0
    while index - run - 1 >= 0 and chunk[index - run - 1] == 0x5C:
        run += 1
    return run % 2 == 1


def _last_key(gap: bytes) -> re.Match[bytes] | None:
    """The last `, "key":` of a gap (the key of the value after it)."""
    found = None
    for match in re.finditer(rb"(,)[ \t\r\n]*(" + _STRING + rb")[ \t\r\n]*:[ \t\r\n]*\Z", gap):
        found = match
    return found


def bom_length(head: bytes) -> int:
    """featstore's one BOM rule: a UTF-8 byte order mark before the JSON text is skipped.

    Every reader (import-json, FeatureDataset, validate) starts after it; `validate` still
    reports it, because the trainer's `json.load` on a file opened as UTF-8 rejects it.
    Returns how many bytes `head` (the file's first bytes) starts with: 3 or 0.
    """
    return len(codecs.BOM_UTF8) if head.startswith(codecs.BOM_UTF8) else 0


def _plain_key(key: bytes) -> str | None:
    """A key without escapes or control characters, decoded directly; None for the others
    (orjson's to decode and judge). orjson takes ~12 bytes a character for a long string."""
    if b"\\" in key or _CONTROL.search(key):
        return None
    try:
        return key[1:-1].decode("utf-8")
    except UnicodeDecodeError:
        return None


def parse_int(text: str) -> int | float:
    """json's `parse_int`: a Python int, or a float (inf past float64) for a huge one."""
    return int(text) if len(text.lstrip("-")) <= _INT_DIGITS else float(text)


def text_start(raw: IO[bytes]) -> int:
    """Where the JSON text starts (`bom_length`), with `raw` positioned there."""
    start = bom_length(raw.read(len(codecs.BOM_UTF8)))
    raw.seek(start)
    return start
