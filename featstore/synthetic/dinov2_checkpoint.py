"""Random-weight stand-ins for the official DINOv2 `*_pretrain.pth` checkpoints.

The key/shape table below is written from the official code (facebookresearch/dinov2:
`dinov2/hub/backbones.py`, `models/vision_transformer.py`, `layers/`), deliberately *not*
derived from `featstore.extraction.dinov2`, so tests comparing the two catch a drift in either.
"""

from __future__ import annotations

from pathlib import Path

import torch

from featstore.extraction.stand_in import mark_checkpoint

# name -> (embed_dim, depth, swiglu ffn, register tokens), as in the hub's vit_small /
# vit_base / vit_large / vit_giant2 builders.
_ARCH: dict[str, tuple[int, int, bool, int]] = {}
for _letter, (_dim, _depth, _swiglu) in {
    "s": (384, 12, False),
    "b": (768, 12, False),
    "l": (1024, 24, False),
    "g": (1536, 40, True),
}.items():
    _ARCH[f"dinov2_vit{_letter}14"] = (_dim, _depth, _swiglu, 0)
    _ARCH[f"dinov2_vit{_letter}14_reg"] = (_dim, _depth, _swiglu, 4)

_GRID = 518 // 14  # hub img_size=518, patch_size=14


def official_state_dict_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the official checkpoint of `name` (e.g. `dinov2_vits14_reg`)."""
    if name not in _ARCH:
        raise KeyError(f"unknown DINOv2 model {name!r}; known: {', '.join(_ARCH)}")
    d, depth, swiglu, regs = _ARCH[name]
    shapes: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, d),
        "pos_embed": (1, _GRID * _GRID + 1, d),
    }
    if regs:
        shapes["register_tokens"] = (1, regs, d)
    shapes["mask_token"] = (1, d)
    shapes["patch_embed.proj.weight"] = (d, 3, 14, 14)
    shapes["patch_embed.proj.bias"] = (d,)
    # SwiGLUFFNFused: hidden = int(4d * 2/3) rounded up to a multiple of 8.
    hidden = (int(4 * d * 2 / 3) + 7) // 8 * 8
    for i in range(depth):
        p = f"blocks.{i}."
        shapes |= {
            p + "norm1.weight": (d,),
            p + "norm1.bias": (d,),
            p + "attn.qkv.weight": (3 * d, d),
            p + "attn.qkv.bias": (3 * d,),
            p + "attn.proj.weight": (d, d),
            p + "attn.proj.bias": (d,),
            p + "ls1.gamma": (d,),
            p + "norm2.weight": (d,),
            p + "norm2.bias": (d,),
        }
        if swiglu:
            shapes |= {
                p + "mlp.w12.weight": (2 * hidden, d),
                p + "mlp.w12.bias": (2 * hidden,),
                p + "mlp.w3.weight": (d, hidden),
                p + "mlp.w3.bias": (d,),
            }
        else:
            shapes |= {
                p + "mlp.fc1.weight": (4 * d, d),
                p + "mlp.fc1.bias": (4 * d,),
                p + "mlp.fc2.weight": (d, 4 * d),
                p + "mlp.fc2.bias": (d,),
            }
        shapes[p + "ls2.gamma"] = (d,)
    shapes["norm.weight"] = (d,)
    shapes["norm.bias"] = (d,)
    return shapes


def random_dinov2_state_dict(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random float32 state dict for `name` whose network is far from degenerate.

    Matrices ~ N(0, 0.02), biases ~ N(0, 0.02), LayerNorm weights ~ 1 + N(0, 0.1),
    LayerScale gammas ~ U(0.1, 1), tokens and position embedding ~ N(0, 0.5) so that the
    position of a patch visibly changes the output.
    """
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape in official_state_dict_shapes(name).items():
        if key.endswith("gamma"):
            t = 0.1 + 0.9 * torch.rand(shape, generator=gen)
        elif key in ("cls_token", "pos_embed", "register_tokens", "mask_token"):
            t = 0.5 * torch.randn(shape, generator=gen)
        elif "norm" in key and key.endswith("weight"):
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        else:
            t = 0.02 * torch.randn(shape, generator=gen)
        state[key] = t
    return state


def write_random_dinov2_checkpoint(path: Path, name: str, seed: int = 0) -> Path:
    """Write `random_dinov2_state_dict(name, seed)` to `path` with `torch.save`.

    Returns:
        `path`, for chaining.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(random_dinov2_state_dict(name, seed), path)
    mark_checkpoint(path, f"random-weight {name} of featstore.synthetic: its features are noise")
    return path
