"""featstore: the data layer between face datasets and the models trained on them.

    import featstore
    summary = featstore.extract("data/face", "data/video", "store", models=["dinov2_vitb14"])
    print(summary.format())

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
    StoreError,
)

__version__ = "0.1.0"

__all__ = [
    "DetectorSettings",
    "ExtractSummary",
    "FeatstoreError",
    "FeatureDataset",
    "InputError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ProvenanceMismatchError",
    "RuntimeOptions",
    "StoreError",
    "__version__",
    "collate",
    "extract",
    "split_by_identity",
    "write_report",
]

_LAZY = {
    "extract": "featstore.pipeline",
    "RuntimeOptions": "featstore.pipeline",
    "DetectorSettings": "featstore.detection",
    "ExtractSummary": "featstore.summary",
    "write_report": "featstore.report",
    "FeatureDataset": "featstore.dataset",
    "collate": "featstore.dataset",
    "split_by_identity": "featstore.dataset",
}

if TYPE_CHECKING:
    from featstore.dataset import FeatureDataset, collate, split_by_identity
    from featstore.detection import DetectorSettings
    from featstore.pipeline import RuntimeOptions, extract
    from featstore.report import write_report
    from featstore.summary import ExtractSummary


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'featstore' has no attribute {name!r}")
