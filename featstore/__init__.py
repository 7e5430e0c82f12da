"""featstore: the data layer between face datasets and the models trained on them.

    import featstore
    summary = featstore.extract("data/face", "data/video", "store", models=["dinov2_vitb14"])
    print(summary.format())
    store = featstore.Store("store")                  # the one door to a store
    store.sql("SELECT count(*) FROM valid_frames")
    featstore.export_json(store, out="valid_images.json")

Heavy modules (torch, onnxruntime, insightface) load on first use, so importing
featstore stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from featstore.errors import (
    FeatstoreError,
    InputError,
    ModelLoadError,
    ModelNotFoundError,
    ProvenanceMismatchError,
    QueryError,
    StoreError,
)

__version__ = "0.1.0"

__all__ = [
    "DetectorSettings",
    "ExtractOptions",
    "ExtractSummary",
    "FeatstoreError",
    "FeatureDataset",
    "InputError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ProvenanceMismatchError",
    "QueryError",
    "RuntimeOptions",
    "Store",
    "StoreError",
    "__version__",
    "collate",
    "export_json",
    "extract",
    "import_json",
    "prune",
    "split_by_identity",
    "validate_json",
    "write_report",
]

_LAZY = {
    "extract": "featstore.extraction.pipeline",
    "prune": "featstore.extraction.prune",
    "RuntimeOptions": "featstore.extraction.pipeline",
    "ExtractOptions": "featstore.extraction.options",
    "DetectorSettings": "featstore.extraction.detection",
    "ExtractSummary": "featstore.extraction.summary",
    "write_report": "featstore.report.build",
    "FeatureDataset": "featstore.dataset.feature_dataset",
    "collate": "featstore.dataset.feature_dataset",
    "split_by_identity": "featstore.dataset.feature_dataset",
    "Store": "featstore.store.store",
    "export_json": "featstore.trainer_json.export",
    "import_json": "featstore.trainer_json.importer",
    "validate_json": "featstore.trainer_json.validate",
}

if TYPE_CHECKING:
    from featstore.dataset.feature_dataset import FeatureDataset, collate, split_by_identity
    from featstore.extraction.detection import DetectorSettings
    from featstore.extraction.options import ExtractOptions
    from featstore.extraction.pipeline import RuntimeOptions, extract
    from featstore.extraction.prune import prune
    from featstore.extraction.summary import ExtractSummary
    from featstore.report.build import write_report
    from featstore.store.store import Store
    from featstore.trainer_json.export import export_json
    from featstore.trainer_json.importer import import_json
    from featstore.trainer_json.validate import validate_json


# Subpackages reachable as attributes after a plain `import featstore`
# (`featstore.query.Store(...)`, `featstore.report.read_report(...)`), loaded on first use.
_SUBMODULES = frozenset(
    {"dataset", "demo", "extraction", "query", "report", "store", "synthetic", "trainer_json"}
)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"featstore.{name}")
    raise AttributeError(f"module 'featstore' has no attribute {name!r}")
