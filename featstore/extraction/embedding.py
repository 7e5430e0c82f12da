"""DINOv2 feature extraction for batches of preprocessed images (docs/formats.md)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from featstore.errors import InputError
from featstore.extraction.decoding import DecodedBatch
from featstore.extraction.detection import Detection
from featstore.extraction.dinov2 import MODEL_SPECS, build_model, load_checkpoint, load_hub_model
from featstore.extraction.weights import file_sha256, resolve_weights

log = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16", "fp16"]
DinoSource = Literal["featstore", "hub"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
PREPROCESSING = (
    "pil-rgb/bilinear-224x224/scale-1-255/imagenet-mean-std/x_norm_clstoken/l2-normalised"
)


@dataclass(frozen=True)
class DinoModelRef:
    """A DINOv2 model to run: its name and where its weights are."""

    name: str
    weights: Path
    weights_sha256: str

    @property
    def dim(self) -> int:
        return MODEL_SPECS[self.name].embed_dim


def resolve_model(name: str, override: Path | None) -> DinoModelRef:
    """Find a model's weights and checksum them (before any heavy loading)."""
    if name not in MODEL_SPECS:
        raise InputError(
            f"model {name!r} is not a DINOv2 model; choose one of: {', '.join(MODEL_SPECS)}"
        )
    path = resolve_weights(name, override)
    return DinoModelRef(name=name, weights=path, weights_sha256=file_sha256(path))


def check_precision(precision: str, device: str) -> None:
    if precision not in PRECISIONS:
        raise InputError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}.")
    if precision == "fp16" and not device.startswith("cuda"):
        raise InputError(
            f"--precision fp16 needs a CUDA device, this run uses {device!r}.\n"
            "Hint: use --precision bf16 (or fp32) on the CPU."
        )


class DinoEmbedder:
    """One loaded DINOv2 model on one device, turning `[N, 3, 224, 224]` into unit vectors."""

    def __init__(
        self,
        ref: DinoModelRef,
        *,
        device: str,
        precision: Precision = "fp32",
        source: DinoSource = "featstore",
    ) -> None:
        check_precision(precision, device)
        self.ref = ref
        self.device = torch.device(device)
        self.precision = precision
        model: torch.nn.Module
        if source == "hub":
            model = load_hub_model(ref.name, ref.weights)
        else:
            with torch.device("meta"):
                model = build_model(ref.name)
            load_checkpoint(model, ref.weights, ref.name)  # takes the checkpoint's tensors
        self.model: Any = model.eval().to(self.device)

    @property
    def dim(self) -> int:
        return self.ref.dim

    def embed_batch(
        self, batch: DecodedBatch, rows: Sequence[int], detections: Sequence[Detection]
    ) -> NDArray[np.float32]:
        """The `Embedder` protocol: the whole image's features for `rows` of the batch."""
        return self.embed(batch.pixels[list(rows)])

    @torch.inference_mode()
    def embed(self, pixels: torch.Tensor) -> NDArray[np.float32]:
        """L2-normalised CLS features, float32 `[N, D]`."""
        x = pixels.to(self.device, non_blocking=True)
        dtype = _AUTOCAST_DTYPES.get(self.precision)
        if dtype is None:
            out = self.model(x)
        else:
            with torch.autocast(device_type=self.device.type, dtype=dtype):
                out = self.model(x)
        return F.normalize(out.float(), dim=-1).cpu().numpy()
