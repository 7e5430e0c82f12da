"""Every error featstore raises on purpose.

    FeatstoreError                 base: catch this to handle any featstore failure
    ├── InputError                 the input tree or an option is unusable
    ├── StoreError                 the store cannot be read or written as asked
    │   ├── ProvenanceMismatchError  new rows would mix with rows made differently
    │   └── QueryError             SQL over the store failed (DuckDB's message inside)
    ├── ModelNotFoundError         weights or a detector pack are not where looked
    └── ModelLoadError             a model file exists but is not the model expected

    KeyboardInterrupt
    └── Interrupted                Ctrl-C or SIGTERM stopped an extraction; says what was saved

A bad *image* is never an exception: it becomes a row with a status and an error
(see `featstore.extraction.pipeline`). Messages name the file, what was expected, what was found
and, after "Hint:", what to do.

Names (identities, file names, paths) can hold anything a file system allows, escape
sequences and newlines included; `printable` is how every name reaches a terminal.
"""

from __future__ import annotations


class FeatstoreError(Exception):
    """Base class of featstore's own errors."""


class InputError(FeatstoreError):
    """An input folder, file or option cannot be used."""


class StoreError(FeatstoreError):
    """The store cannot be read or written as asked."""


class ProvenanceMismatchError(StoreError):
    """Rows extracted with different settings would mix in one model partition."""


class QueryError(StoreError):
    """A SQL query (or `--where` predicate) over the store failed."""


class ModelNotFoundError(FeatstoreError):
    """Model weights or an InsightFace pack were not found in any place looked at."""


class ModelLoadError(FeatstoreError):
    """A model file was found but does not hold the model expected."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM stopped an extraction after its finished identities were
    committed. A KeyboardInterrupt, so code that stops on Ctrl-C still does; its message
    says how many identities were saved."""


def printable(text: object) -> str:
    """`text` safe to print on a terminal: one line, no control sequences.

    Every character that is not printable (C0/C1 controls such as ESC and newline, the
    Unicode line and paragraph separators, bidirectional overrides and other format
    characters) is written as its Python escape (`\\x1b`, `\\n`, `\\u2028`); a byte of
    a non-UTF-8 file name (a lone surrogate, PEP 383) as `\\xNN`. Printable text,
    non-ASCII letters included, is unchanged.
    """
    text = str(text)
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char.isprintable():
            out.append(char)
        elif "\udc80" <= char <= "\udcff":  # an undecodable byte of a file name
            out.append(f"\\x{ord(char) - 0xDC00:02x}")
        else:
            out.append(char.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def plural(n: int, singular: str, plural: str | None = None) -> str:
    """`n` and the noun that goes with it: `1 identity`, `2 identities`, `0 images`."""
    if n == 1:
        return f"{n} {singular}"
    if plural is None:
        plural = singular[:-1] + "ies" if singular.endswith("y") else singular + "s"
    return f"{n} {plural}"


def printable_message(text: str) -> str:
    """A message's lines, each made `printable`: its own line breaks stay, nothing else."""
    return "\n".join(printable(line) for line in text.split("\n"))
