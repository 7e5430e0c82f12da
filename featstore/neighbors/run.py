"""`featstore neighbors`: who is who across a model's identities and images.

    result = find_neighbors(Store("faces-store"))              # the ArcFace model
    result = find_neighbors(store, model="dinov2_vitb14", k=5)  # copies, not people

Reads the model's table at its latest version, searches (`featstore.neighbors.search`)
and replaces the neighbors table (`featstore.store.neighbors`) in one commit, unless the
table already holds what this run would compute: the same model table id and version and
the same settings. Then nothing is read beyond the table's log and nothing is committed.

The thresholds are defaults for looking, not truths (docs/neighbors.md says where they
come from): an identity edge at or above `threshold` suggests one person under two
names; an image pair at or above `copy_threshold` suggests one image in two places.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from featstore.errors import InputError
from featstore.neighbors.pairs import identity_rows, image_rows
from featstore.neighbors.search import (
    EXACT_LIMIT,
    TARGET_COPY_RECALL,
    TARGET_RECALL,
    Method,
    Searcher,
)
from featstore.neighbors.vectors import identity_vectors, load_embeddings
from featstore.store.consistency import is_arcface_model
from featstore.store.neighbors import SCHEMA, NeighborsTable
from featstore.store.store import Store

log = logging.getLogger(__name__)

DEFAULT_K = 10
# ArcFace (buffalo_l's w600k_r50), cosine of normed embeddings: see docs/neighbors.md.
ARCFACE_THRESHOLD = 0.5  # identity edge: likely the same person
ARCFACE_COPY_THRESHOLD = 0.95  # image pair: likely the same image (re-saved, copied)
# DINOv2 (the whole image): only near-identical images come this close.
DINOV2_THRESHOLD = 0.95
DINOV2_COPY_THRESHOLD = 0.95
COPIES_NOT_PEOPLE = (
    "model {model} is not an ArcFace model: its features describe the whole image, so "
    "its neighbors find copied and near-identical images, not the same person under two "
    "names. Add an ArcFace model (featstore extract ... --model arcface) to find people."
)


@dataclass
class NeighborsResult:
    """What a run found and did."""

    model: str
    model_version: int
    version: int  # the neighbors table's version holding the result
    committed: bool  # False: the table was already up to date
    k: int
    threshold: float
    copy_threshold: float
    identities: int = 0
    images: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    methods: dict[str, str] = field(default_factory=dict)  # search -> Method.describe()
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


def find_neighbors(
    store: Store | str,
    *,
    model: str | None = None,
    k: int | None = None,
    threshold: float | None = None,
    copy_threshold: float | None = None,
    exact_limit: int | None = None,
) -> NeighborsResult:
    """Compute (or find up to date) the neighbors table of `model`.

    Raises:
        InputError: no ArcFace model and none named, a model of fewer than two identities,
            `k` not below the identities, a threshold outside [-1, 1].
        StoreError: the store cannot be read or written.
    """
    store = store if isinstance(store, Store) else Store(store)
    name, warnings = choose_model(store, model)
    arcface = is_arcface_model(name)
    threshold = _check_threshold(
        "--threshold", ARCFACE_THRESHOLD if arcface else DINOV2_THRESHOLD, threshold
    )
    copy_threshold = _check_threshold(
        "--copy-threshold",
        ARCFACE_COPY_THRESHOLD if arcface else DINOV2_COPY_THRESHOLD,
        copy_threshold,
    )
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise InputError(f"--k {k!r}: K must be a whole number of at least 1.")
    exact_limit = EXACT_LIMIT if exact_limit is None else exact_limit
    if isinstance(exact_limit, bool) or not isinstance(exact_limit, int) or exact_limit < 0:
        raise InputError(
            f"--exact-limit {exact_limit!r}: must be a whole number of vectors, 0 or more "
            f"(0: always approximate; default {EXACT_LIMIT:,})."
        )
    info = store.model(name)
    key = {
        "model": name,
        "table_id": info.table_id,
        "model_version": info.version,
        "k": k or DEFAULT_K,
        "threshold": threshold,
        "copy_threshold": copy_threshold,
        "exact_limit": exact_limit,
        "target_recall": TARGET_RECALL,
        # Tuned on synthetic copies since this version: older tables are recomputed.
        "target_copy_recall": TARGET_COPY_RECALL,
    }
    table = NeighborsTable(store.location, name)
    stored = table.read()
    if stored is not None and stored.settings.get("key") == key:
        report = stored.settings.get("report", {})
        return NeighborsResult(
            name, info.version, stored.version, False, int(report.get("k", key["k"])),
            threshold, copy_threshold,
            identities=int(report.get("identities", 0)),
            images=int(report.get("images", 0)),
            excluded=dict(report.get("excluded", {})),
            methods=dict(report.get("methods", {})),
            warnings=warnings,
        )  # fmt: skip
    started = time.perf_counter()
    rows, report = _compute(store, name, info.version, k, threshold, copy_threshold, exact_limit)
    version = table.write(rows, {"key": key, "report": report})
    return NeighborsResult(
        name, info.version, version, True, report["k"], threshold, copy_threshold,
        identities=report["identities"], images=report["images"],
        excluded=report["excluded"], methods=report["methods"],
        seconds=time.perf_counter() - started, warnings=warnings,
    )  # fmt: skip


def choose_model(store: Store, model: str | None) -> tuple[str, list[str]]:
    """The model to search and the warnings to show (a DINOv2 model finds copies)."""
    names = store.model_names()
    if model is not None:
        name = store.choose(model, names)
        if is_arcface_model(name):
            return name, []
        warning = COPIES_NOT_PEOPLE.format(model=name)
        log.info(warning)  # the caller shows `NeighborsResult.warnings`
        return name, [warning]
    arcface = [n for n in names if is_arcface_model(n)]
    if len(arcface) == 1:
        return arcface[0], []
    if arcface:
        raise InputError(
            f"store {store.location} holds several ArcFace models ({', '.join(arcface)}); "
            "choose one with --model."
        )
    others = ", ".join(names) or "none"
    raise InputError(
        f"store {store.location} has no ArcFace model (arcface_<pack>; it holds: {others}), "
        "and only ArcFace embeddings tell people apart.\nHint: add one with `featstore "
        "extract --face-dir ... --video-dir ... --store ... --model arcface` (the pack's "
        "recognition model, stored as arcface_buffalo_l), or pass --model with a DINOv2 "
        "model to find copied images (not the same person under two names)."
    )


def _check_threshold(option: str, default: float, value: float | None) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise InputError(f"{option} {value!r}: a cosine threshold must be a number in [-1, 1].")
    if not -1.0 <= float(value) <= 1.0:
        raise InputError(
            f"{option} {value}: a cosine lies in [-1, 1], so this threshold would "
            f"{'never' if value > 1 else 'always'} hold.\nHint: pick a value in [-1, 1] "
            f"(default {default})."
        )
    return float(value)


def _compute(
    store: Store,
    name: str,
    version: int,
    k: int | None,
    threshold: float,
    copy_threshold: float,
    exact_limit: int,
) -> tuple[pa.Table, dict[str, Any]]:
    emb = load_embeddings(store, name, version)
    found = identity_vectors(emb)
    with_vector = len(set(found[0].index.tolist()) | set(found[1].index.tolist()))
    if with_vector < 2:
        raise InputError(
            f"model {name} has {with_vector} identit{'y' if with_vector == 1 else 'ies'} "
            "with a usable embedding: neighbors need at least two.\nHint: extract more "
            "identities into the store, or pick another --model."
        )
    if k is None:  # the default fits the store; a K asked for is checked
        k = min(DEFAULT_K, with_vector - 1)
    elif k >= with_vector:
        raise InputError(
            f"--k {k}: model {name} has {with_vector} identities with a usable embedding, "
            f"so each has at most {with_vector - 1} others.\nHint: use --k {with_vector - 1} "
            "or less."
        )
    parts: list[pa.Table] = []
    methods: dict[str, str] = {}
    for vectors in found:
        if len(vectors.index) < 2:
            continue
        searcher = Searcher(vectors.vectors, k_hint=k + 1, exact_limit=exact_limit)
        methods[f"identity {vectors.kind}"] = searcher.method.describe()
        parts.append(identity_rows(emb.identities, vectors, searcher, k, name, threshold))
    if len(emb.vectors) > 1:
        searcher = Searcher(
            emb.vectors, k_hint=k + 1, exact_limit=exact_limit, min_cosine=copy_threshold
        )
        methods["images"] = searcher.method.describe()
        parts.extend(image_rows(emb, searcher, k, copy_threshold))
    excluded = dict(emb.excluded)
    mean_excluded = found[1].excluded
    if mean_excluded:
        excluded["identities whose frames' mean is zero"] = mean_excluded
    for why, count in excluded.items():
        log.warning("model %s: %d left out (%s)", name, count, why)
    report = {
        "k": k,
        "identities": len(emb.identities),
        "images": len(emb.vectors),
        "excluded": excluded,
        "methods": methods,
    }
    return pa.concat_tables(parts) if parts else SCHEMA.empty_table(), report


__all__ = ["DEFAULT_K", "Method", "NeighborsResult", "choose_model", "find_neighbors"]
