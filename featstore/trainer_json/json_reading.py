"""Reading a trainer JSON whose top level is not an object: the whole-file parse that says
what it is, or names the line and column of a syntax error (`json_stream` reads objects)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import IO, Any

from featstore.trainer_json.json_stream import JsonTextError, parse_int
from featstore.trainer_json.problems import Problem

SNIPPET = 20  # characters shown either side of a syntax error


def parse_whole(raw: IO[bytes], start: int) -> tuple[Any, list[str]] | Problem:
    """Parse the file with the standard library: (top value, repeated top-level keys)."""
    raw.seek(start)
    data = raw.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        bad = data[exc.start : exc.end].hex(" ").upper()
        found = f"byte {bad} at byte offset {start + exc.start} (line {line})"
        return Problem("Q3-encoding", None, None, "UTF-8 text", found)
    del data  # the text is all that is needed from here on
    repeated: list[str] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # Called innermost object first, so the last call is the top-level object's.
        obj = dict(pairs)
        counts = Counter(key for key, _ in pairs) if len(obj) < len(pairs) else Counter()
        repeated[:] = [key for key, n in counts.items() for _ in range(n - 1)]
        return obj

    try:
        return json.loads(text, object_pairs_hook=pairs_hook, parse_int=parse_int), repeated
    except json.JSONDecodeError as exc:
        snippet = text[max(exc.pos - SNIPPET, 0) : exc.pos + SNIPPET]
        found = f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
        found += f", near {json.dumps(snippet, ensure_ascii=False)}"
        if text.find("]", exc.pos) < 0 and text.find("}", exc.pos) < 0:
            # Nothing is closed after the error: the text stops inside the document.
            found += " (the file stops inside the document: truncated?)"
    except ValueError as exc:  # an integer of more than 4300 digits
        found = str(exc).split(";")[0]
    return Problem("Q3-json-syntax", None, None, "valid JSON", found)


def first_non_space(raw: IO[bytes]) -> bytes:
    """The first byte that is not JSON whitespace, or b"" at the end of the file."""
    while chunk := raw.read(1 << 16):
        stripped = chunk.lstrip(b" \t\r\n")
        if stripped:
            return stripped[:1]
    return b""


def text_problem(exc: JsonTextError, raw: IO[bytes]) -> Problem:
    """The problem for a file whose text stops being a JSON object somewhere."""
    if exc.kind == "encoding":
        raw.seek(exc.offset)
        bad = raw.read(1).hex(" ").upper()
        found = f"byte {bad} at byte offset {exc.offset} (line {exc.line})"
        return Problem("Q3-encoding", exc.identity, None, "UTF-8 text", found)
    return Problem("Q3-json-syntax", exc.identity, None, "valid JSON", str(exc))


def guess_base_dir(first_missing: str | None, folder: Path) -> str:
    """Where a missing relative path does resolve: the folder's ancestors or the cwd."""
    if not first_missing:
        return ""
    relative = first_missing.replace("\\", "/")
    if Path(relative).is_absolute():
        return ""
    for candidate in [*list(folder.parents)[:5], Path.cwd()]:
        if (candidate / relative).is_file():
            return f"; they resolve against {candidate} (the --base-dir of the export?)"
    return ""
