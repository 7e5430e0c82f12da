"""The released DINOv2 backbones' architectures: names, widths, depths (no torch import).

Kept apart from `featstore.extraction.dinov2` so that reading a JSON file or the store can check a
model name against its dimension without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DEFAULT_MODEL = "dinov2_vitb14"  # the seed's recommended model
PATCH_SIZE = 14
CHECKPOINT_IMG_SIZE = 518  # the released weights carry a 37x37 position grid


@dataclass(frozen=True)
class Dinov2Spec:
    """Architecture of one released DINOv2 backbone.

    The interpolation settings differ between families: the hub builds the `_reg` models
    with `interpolate_antialias=True, interpolate_offset=0.0` and the others with
    `False, 0.1`, and the features depend on it whenever the input is not 518x518.
    """

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    ffn: Literal["mlp", "swiglu"] = "mlp"
    num_register_tokens: int = 0
    interpolate_antialias: bool = False
    interpolate_offset: float = 0.1

    @property
    def checkpoint_stem(self) -> str:
        """Stem of the official file, e.g. `dinov2_vits14_reg4` for `dinov2_vits14_reg`."""
        base = self.name.removesuffix("_reg")
        return f"{base}_reg{self.num_register_tokens}" if self.num_register_tokens else base


_ARCH: dict[str, tuple[int, int, int, Literal["mlp", "swiglu"]]] = {
    "s": (384, 12, 6, "mlp"),
    "b": (768, 12, 12, "mlp"),
    "l": (1024, 24, 16, "mlp"),
    "g": (1536, 40, 24, "swiglu"),
}
MODEL_SPECS: dict[str, Dinov2Spec] = {
    spec.name: spec
    for k, (dim, depth, heads, ffn) in _ARCH.items()
    for spec in (
        Dinov2Spec(f"dinov2_vit{k}14", dim, depth, heads, ffn),
        Dinov2Spec(f"dinov2_vit{k}14_reg", dim, depth, heads, ffn, 4, True, 0.0),
    )
}
