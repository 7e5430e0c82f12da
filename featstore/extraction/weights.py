"""Finding DINOv2 weights: an explicit file, torch.hub's cache, or the official download."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import torch

from featstore.errors import InputError, ModelNotFoundError
from featstore.extraction.dinov2_specs import MODEL_SPECS

log = logging.getLogger(__name__)

DINOV2_BASE_URL = "https://dl.fbaipublicfiles.com/dinov2"
NO_DOWNLOAD_ENV = "FEATSTORE_NO_DOWNLOAD"
DOWNLOAD_TIMEOUT_S = 10.0  # per connect / per read: an offline machine fails fast


def official_url(name: str) -> str:
    """Official URL of `name`'s weights (`.../dinov2_vits14/dinov2_vits14_reg4_pretrain.pth`)."""
    spec = MODEL_SPECS[name]
    return f"{DINOV2_BASE_URL}/{name.removesuffix('_reg')}/{spec.checkpoint_stem}_pretrain.pth"


def _download(url: str, dest: Path) -> None:
    """Download to a temporary name beside `dest`, then rename, so `dest` is never partial."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + f".part{os.getpid()}")
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp, tmp.open("wb") as f:
            expected = int(resp.headers.get("Content-Length") or -1)
            done = 0
            while chunk := resp.read(1 << 20):
                f.write(chunk)
                done += len(chunk)
        if expected >= 0 and done != expected:
            raise OSError(f"download truncated: {done} of {expected} bytes")
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)


def resolve_weights(name: str, override: Path | None) -> Path:
    """Path of the official-format weights of DINOv2 model `name`.

    Looks, in order, at `override` (and only there when given), torch.hub's checkpoint cache
    (`<torch.hub.get_dir()>/checkpoints/`, where `torch.hub.load(..., pretrained=True)` puts
    them), then downloads the official file into that cache unless `FEATSTORE_NO_DOWNLOAD=1`.

    Raises:
        InputError: `name` is not a known model.
        ModelNotFoundError: no weights anywhere; the message lists every place looked at.
    """
    if name not in MODEL_SPECS:
        raise InputError(f"unknown DINOv2 model '{name}'; known models: {', '.join(MODEL_SPECS)}")
    if override is not None:
        override = Path(override).expanduser()
        if override.is_file():
            return override
        raise ModelNotFoundError(
            f"weights file for {name} not found: {override}\n"
            "Hint: check the path given as weights= (CLI: --weights), or leave it out to use "
            "torch.hub's cache."
        )
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    official = cache / f"{MODEL_SPECS[name].checkpoint_stem}_pretrain.pth"
    # The official file name, then `<name>_pretrain.pth` (differs only for `_reg` models).
    candidates = list(dict.fromkeys([official, cache / f"{name}_pretrain.pth"]))
    for path in candidates:
        if path.is_file():
            return path
    looked = [f"  {p} (no such file)" for p in candidates]
    url = official_url(name)
    if os.environ.get(NO_DOWNLOAD_ENV, "") not in ("", "0"):
        looked.append(f"  {url} (download skipped: {NO_DOWNLOAD_ENV} is set)")
    else:
        log.info("downloading %s to %s", url, official)
        try:
            _download(url, official)
            return official
        except Exception as exc:  # URLError, timeout, HTTPError, disk full: all reported
            looked.append(f"  {url} (download failed: {type(exc).__name__}: {exc})")
    raise ModelNotFoundError(
        f"DINOv2 weights for {name} not found. Looked at:\n"
        + "\n".join(looked)
        + f"\nHint: on a machine with network, download {url} into {cache} "
        f"(or set TORCH_HOME), or give the file: weights={{{name!r}: PATH}} "
        f"(CLI: --weights {name}=PATH)."
    )


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks.

    Remembered per process by the file's identity and stat: each `extract` call hashes its
    checkpoints for the provenance, and a notebook or a test calling it again should not
    re-read 90 MB (ViT-S/14) to 4.5 GB (ViT-g/14). Rewriting the file changes its size,
    mtime or ctime, so a changed file is hashed again.
    """
    resolved = Path(path).resolve()
    st = resolved.stat()
    return _sha256_of(resolved, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@functools.lru_cache(maxsize=32)
def _sha256_of(path: Path, *stat: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def parse_weights_options(values: Sequence[str], models: Sequence[str]) -> dict[str, Path]:
    """Parse repeated `--weights [MODEL=]PATH` options.

    A bare PATH applies to the only requested model; with several models each value must
    be `MODEL=PATH`. A value whose text before `=` is not a model name and that names an
    existing file is taken as a bare path (paths may contain `=`).

    Returns:
        Requested model name -> path (not checked for existence: `resolve_weights` does).

    Raises:
        InputError: ambiguous bare path, unknown or unrequested model, or a model twice.
    """
    out: dict[str, Path] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        is_model = key in models or key in MODEL_SPECS
        if sep and not is_model and re.fullmatch(r"[\w.-]+", key) and not Path(value).exists():
            is_model = True  # looks like MODEL=PATH with a misspelt model
        if sep and is_model:
            if key not in models:
                raise InputError(
                    f"--weights {value}: model '{key}' is not among the requested models "
                    f"({', '.join(models)})"
                )
            model, path = key, rest
        elif len(models) == 1:
            model, path = models[0], value
        else:
            raise InputError(
                f"--weights {value}: {len(models)} models are requested "
                f"({', '.join(models)}); use --weights MODEL=PATH"
            )
        if not path:
            raise InputError(f"--weights {value}: empty path")
        if model in out:
            raise InputError(f"--weights given twice for {model}")
        out[model] = Path(path).expanduser()
    return out
