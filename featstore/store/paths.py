"""Paths featstore stores and writes: relative to the extraction's base dir, and output
files, which never land inside a store."""

from __future__ import annotations

import os
from pathlib import Path

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
    """The absolute path of an output file, after checking that its folder can take it.

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
    if not out.parent.is_dir():
        raise InputError(
            f"--out {out}: the folder {out.parent} does not exist.\n"
            "Hint: create it first, or choose another --out."
        )
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
