"""A source opened: the cache folder that holds its samples, built on first use.

A store (a version of one model's table), a new-format or 3D JSON (read identity by
identity, its frames' features spooled beside the cache), or an old-format JSON (its
images extracted into a store first, then read as a store)."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featstore.dataset.cache import (
    CacheLease,
    PositionEncoding,
    SampleColumns,
    cache_key,
    cached_folder,
    default_cache_dir,
    materialise,
    read_manifest,
)
from featstore.errors import InputError
from featstore.extraction.dinov2_specs import DEFAULT_MODEL

if TYPE_CHECKING:
    from featstore.dataset.sources import JsonDocument
    from featstore.extraction.options import ExtractOptions

log = logging.getLogger(__name__)


def from_store(
    source: str | os.PathLike[str],
    model: str | None,
    where: str | None,
    cache_dir: str | os.PathLike[str] | None,
    version: int | None,
    encoding: PositionEncoding = "spherical_angles",
    keypoints: bool = True,
) -> tuple[str, int, CacheLease]:
    """`keypoints`: with the fields `STORE_KEYPOINT_FIELDS` (slow to make: see there)."""
    from featstore.dataset.sources import describe_store, read_store
    from featstore.store import Store

    store = Store(source)
    store.require_models()
    info = store.feature_model(model, version)
    cache = store_cache_dir(store.location.local, cache_dir)
    description = describe_store(store, info, where, encoding, keypoints)
    lease = _spooled(
        cache,
        description,
        lambda spool: read_store(store, info, where, encoding, spool, keypoints),
    )
    return info.name, info.version, lease


def from_npy_dir(
    path: Path,
    model: str | None,
    where: str | None,
    cache_dir: str | os.PathLike[str] | None,
) -> tuple[str, CacheLease]:
    """face000's npy training directory (`featstore.dataset.npy_source`)."""
    from featstore.dataset.npy_source import describe_npy_dir, read_npy_dir

    if where is not None:
        raise InputError(
            f"where= filters a store's frames with SQL; {path} is an npy training directory."
            "\nHint: filter when exporting (`featstore export-npy --where ...`)."
        )
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    description = describe_npy_dir(path)
    lease = _spooled(cache, description, lambda spool: read_npy_dir(path, model, spool))
    found = read_manifest(lease.folder)["model"]
    if model is not None and model != found:
        raise InputError(f"{path}: model={model!r}, but the cache holds {found}.")
    return found, lease


def _spooled(
    cache: Path, description: dict[str, Any], read: Callable[[Path], SampleColumns]
) -> CacheLease:
    """The cache folder of `description`, built by `read(spool)` when absent.

    The frames' features are written to `spool` beside the cache while read (a name that a
    later build removes, were this one killed), then moved in: not held in memory.
    """
    spool = cache / f"{cache_key(description)}.tmp-spool-{os.getpid()}"
    try:
        return materialise(cache, description, lambda: read(spool))
    finally:
        shutil.rmtree(spool, ignore_errors=True)


def store_cache_dir(store: Path | None, cache_dir: str | os.PathLike[str] | None) -> Path:
    """`cache_dir`, else inside a local store you can write to, else the user's cache."""
    if cache_dir is not None:
        return Path(cache_dir)
    if store is None:  # on object storage: the samples are mapped from a local disk
        return default_cache_dir()
    inside = store / "_cache" / "datasets"
    probe = inside if inside.is_dir() else store
    return inside if os.access(probe, os.W_OK) else default_cache_dir()


def from_json(
    path: Path,
    model: str | None,
    where: str | None,
    cache_dir: str | os.PathLike[str] | None,
    extraction_store: str | os.PathLike[str] | None,
    extraction: ExtractOptions,
    encoding: PositionEncoding,
) -> tuple[str, CacheLease, str]:
    from featstore.dataset.sources import (
        describe_json,
        json_format,
        read_new_json,
        read_old_json,
    )

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    description = describe_json(path)  # before reading: a later change makes a new key
    # Features of a new-format file read before: its content was checked then.
    lease = cached_folder(cache, description)
    if lease is None:
        if json_format(path) == "old":  # image paths only: small, read whole
            document = read_old_json(path)
            store = extract_old_json(document, model, extraction_store, extraction)
            name, _, lease = from_store(
                store, model or DEFAULT_MODEL, where, cache_dir, None, encoding
            )
            return name, lease, "old-json"
        lease = _spooled(cache, description, lambda spool: read_new_json(path, model, spool))
    found = read_manifest(lease.folder)["model"]
    if model is not None and model != found:
        raise InputError(
            f"{path}: the features were made with {found}, not with model={model!r}.\n"
            f"Hint: pass model={found!r}, or None."
        )
    if where is not None:
        raise InputError(
            f"where= filters a store's frames with SQL; {path} is a JSON file.\n"
            "Hint: filter when exporting (`featstore export-json --where ...`), or read the "
            "store itself."
        )
    return found, lease, "new-json"


def extract_old_json(
    document: JsonDocument,
    model: str | None,
    extraction_store: str | os.PathLike[str] | None,
    extraction: ExtractOptions,
) -> Path:
    """Extract the images an old-format file lists into a store (skipped when current),
    with `extraction`'s settings and `model`."""
    from featstore.dataset.sources import old_json_inputs
    from featstore.extraction.pipeline import extract_inputs

    tree = old_json_inputs(document)
    store = (
        Path(extraction_store)
        if extraction_store is not None
        else document.path.with_name(document.path.name + ".featstore")
    )
    options = replace(extraction, models=[model or DEFAULT_MODEL])
    summary = extract_inputs(tree, store, options, base_dir=document.path.absolute().parent)
    log.info("old-format %s: %s", document.path, summary.format())
    return store
