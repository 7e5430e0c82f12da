"""An identity's input fingerprint: how a rerun knows its files are the ones it extracted.

Each row records its identity's fingerprint (the store's `input_fingerprint` column), as
up to three parts joined by `/`:

    <stat>/<copy>/<content>

- `stat`: SHA-256 of what git's index compares for each file: name, size, mtime_ns,
  ctime_ns, inode, mode (of the file a symlink points to). A rerun that finds it equal
  reads no file: it stays a directory listing at millions of images. The ctime catches
  what size and mtime miss: nobody can set it, and every write, `os.utime` (restoring the
  mtime after a same-size rewrite) and rename moves it; the inode catches a file replaced
  by another (`mv new old`).
- `copy`: SHA-256 of what a copy keeps (`cp -a`, `rsync -a`, `shutil.copytree`): name,
  size, mtime_ns, mode. A copy has new inodes and ctimes, so its `stat` differs; when its
  `copy` part is equal, the files are read and their `content` compared instead of the
  identity being extracted again.
- `content`: XXH3-128 of every file's name, size and bytes, taken by the run that
  extracted the identity, after decoding (the files are then in the page cache) and only
  if the files still have the `stat` they were planned with (a file changed mid-run gets
  no `content`, so its identity is redone next run).

Names, not full paths, so moving the whole dataset changes nothing here (a changed base
dir is caught by the model's provenance). A file that cannot be stat'ed contributes a
marker with the reason, so its identity is redone once it can be.

A fingerprint of one part (rows written before the copy fallback existed, and the
version-1 stores `migrate` converted) still matches on `stat`; a copy of such a dataset is
extracted again, as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat as stat_module
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

SEPARATOR = "/"  # never in a hex digest
_CHUNK = 1 << 20


@dataclass(frozen=True)
class InputStat:
    """The listing-only parts of an identity's fingerprint (see the module docstring)."""

    stat: str
    copy: str

    def recorded(self, content: str | None) -> str:
        """The fingerprint the rows record: with `content` when it is known."""
        return self.stat if content is None else SEPARATOR.join((self.stat, self.copy, content))

    def matches(self, stored: str | None, content: Callable[[], str | None]) -> bool:
        """Whether `stored` was recorded from these files: the same `stat`, or (a copy)
        the same `copy` part and the same `content`, which `content()` reads only then."""
        if not stored:
            return False
        parts = stored.split(SEPARATOR)
        if parts[0] == self.stat:
            return True
        if len(parts) != 3 or parts[1] != self.copy:
            return False
        return content() == parts[2]


def stat_inputs(identity: str, has_video_dir: bool, paths: Sequence[Path]) -> InputStat:
    """`InputStat` of an identity's files (one `stat` each)."""
    strict: list[object] = [identity, has_video_dir]
    copied: list[object] = [identity, has_video_dir]
    for path in paths:
        try:
            st = path.stat()
        except OSError as exc:
            marker = [path.name, "unstat", type(exc).__name__, exc.errno]
            strict.append(marker)
            copied.append(marker)
            continue
        strict.append(
            [path.name, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode]
        )
        copied.append([path.name, st.st_size, st.st_mtime_ns, st.st_mode])
    return InputStat(_sha256(strict), _sha256(copied))


def content_digest(paths: Sequence[Path]) -> str | None:
    """XXH3-128 of each file's name, size and bytes, in order; None when one is not a
    regular file or cannot be read (its identity then has no copy fallback).

    Opened non-blocking and checked with `fstat`, as decoding opens images, so a FIFO or
    a device named like an image is never read or waited on.
    """
    import xxhash

    digest = xxhash.xxh3_128()
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat_module.S_ISREG(st.st_mode):
                return None
            digest.update(path.name.encode("utf-8", "surrogateescape") + b"\0")
            digest.update(st.st_size.to_bytes(8, "little"))
            with os.fdopen(fd, "rb", closefd=False) as file:
                while chunk := file.read(_CHUNK):
                    digest.update(chunk)
        except OSError:
            return None
        finally:
            os.close(fd)
    return digest.hexdigest()


def _sha256(entries: list[object]) -> str:
    payload = json.dumps(entries, ensure_ascii=False).encode("utf-8", "surrogateescape")
    return hashlib.sha256(payload).hexdigest()
