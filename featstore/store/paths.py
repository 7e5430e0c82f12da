"""Paths featstore stores and writes: relative to the extraction's base dir; output
files, which never land inside a store; and the one way a local file or folder is
written whole or not at all (`AtomicPath`, `write_atomic`).

Written through `AtomicPath`, a path that is a symlink keeps its link: the file it points
at is replaced (atomically, beside it); a device or FIFO (`--output /dev/stdout`, a pipe)
is written in place, never replaced by a file; a new file gets the mode the umask gives,
a replaced one keeps its own.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile
import uuid
from pathlib import Path
from types import TracebackType

from featstore.errors import InputError

_STORE_MARKER = "_featstore.json"  # featstore.store.format.STORE_MANIFEST (kept import-free)


def relative_path(path: Path, base_dir: Path) -> str:
    """`path` relative to `base_dir` with forward slashes; absolute when impossible."""
    try:
        rel = os.path.relpath(path, base_dir)
    except ValueError:  # another drive on Windows
        return Path(path).absolute().as_posix()
    return Path(rel).as_posix()


def output_path(out: Path, kind: str = "a JSON file") -> Path:
    """The absolute path of an output file, after checking that its folder can take it
    (the folder is created when missing).

    Args:
        out: the `--out` path as given.
        kind: what the file is, for the hint ("a JSON file", "an .html file").
    """
    out = Path(os.path.abspath(out))
    if out.is_dir():
        raise InputError(f"--out {out} is a folder.\nHint: give the path of {kind}.")
    store = enclosing_store(out)
    if store is not None:
        raise InputError(
            f"--out {out} is inside the store {store}: writing there could replace the "
            "store's own files.\nHint: write outputs outside the store's folder."
        )
    # The folder is created as `mkdir -p` would (the README writes the 3D file into
    # train_transformer3D/, where the seed's trainer looks for it).
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(
            f"--out {out}: cannot create the folder {out.parent} ({exc.strerror or exc}).\n"
            "Hint: choose another --out."
        ) from exc
    return out


def enclosing_store(path: Path) -> Path | None:
    """The store folder `path` lies in (itself or a parent holds the store marker), if any.

    Symlinks are resolved first, so a link into a store is caught too.
    """
    resolved = Path(os.path.realpath(path))
    for folder in [resolved.parent, *resolved.parent.parents]:
        if (folder / _STORE_MARKER).is_file():
            return folder
    return None


def temporary_suffix() -> str:
    """`tmp-<host>-<pid>-<random>`: who wrote a temporary, so only its owner's death frees it."""
    return f"tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class AtomicPath:
    """`path` made whole or not at all: built at `tmp` beside it, then renamed over it.

        with AtomicPath(folder) as target:
            target.tmp.mkdir()
            ...                     # fill target.tmp
        # renamed over `folder` (an old folder there replaced); removed if the block failed

    A file or a folder is built at `tmp` (`<name>.<suffix>`, the same filesystem, so the
    rename is atomic); readers of `path` see the old one or the new one, never a torn
    one. `commit()` renames, `discard()` removes; as a context manager, the block's end
    commits and an exception discards. OSErrors are the caller's to word.

    Args:
        path: what to make.
        suffix: the temporary's suffix after `<name>.`; default `temporary_suffix()`.
    """

    def __init__(self, path: Path, suffix: str | None = None) -> None:
        self.path = Path(path)
        suffix = suffix or temporary_suffix()
        # What the rename replaces: a symlink's target (the link stays); None for a
        # device or FIFO, which is written in place from a temporary elsewhere.
        self.target = _replaced(self.path)
        if self.target is None:
            self.tmp = Path(tempfile.gettempdir()) / f".featstore-{self.path.name}.{suffix}"
        else:
            self.tmp = self.target.with_name(f"{self.target.name}.{suffix}")

    def commit(self) -> None:
        """Rename `tmp` over `path`; `tmp` is removed when that fails."""
        try:
            if self.target is None:
                with open(self.tmp, "rb") as source, open(self.path, "wb") as sink:
                    shutil.copyfileobj(source, sink, 1 << 20)
                self.discard()
                return
            if self.tmp.is_dir() and self.target.is_dir():  # os.replace keeps a full folder
                shutil.rmtree(self.target)
            elif self.tmp.is_file():
                os.chmod(self.tmp, _mode_for(self.target))
            os.replace(self.tmp, self.target)
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        """Remove `tmp`, whatever is left of it."""
        if self.tmp.is_dir() and not self.tmp.is_symlink():
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> AtomicPath:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()


def write_atomic(
    path: Path, data: bytes | memoryview, *, suffix: str | None = None, sync: bool = True
) -> int:
    """Write `data` to `path` whole or not at all (`AtomicPath`); returns its size.

    Args:
        sync: fsync before the rename, so a crash cannot leave `path` renamed but empty.
    """
    with AtomicPath(path, suffix) as target, open(target.tmp, "wb") as file:
        file.write(data)
        if sync:
            file.flush()
            os.fsync(file.fileno())
    return len(data)


def _replaced(path: Path) -> Path | None:
    """The path a rename should replace for `path` (symlinks followed), or None when it is
    a device, FIFO or socket."""
    real = Path(os.path.realpath(path))
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        return real
    return None if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) else real


def _mode_for(target: Path) -> int:
    """A replaced file's own mode; for a new one, what the umask gives (temporaries made
    by mkstemp-like code are 0600)."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mask = os.umask(0o022)  # the only way to read it; set back at once
        os.umask(mask)
        return 0o666 & ~mask
