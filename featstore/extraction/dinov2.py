"""A compact, torch-only re-implementation of the official DINOv2 backbones.

The module tree mirrors facebookresearch/dinov2 so `state_dict()` has exactly the keys and
shapes of the released `*_pretrain.pth` files. Inference only (no drop-path, masks, nested
tensors, xFormers); `forward` returns the hub's `x_norm_clstoken`, not L2-normalised.
"""

from __future__ import annotations

import math
import socket
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from featstore.errors import InputError, ModelLoadError, ModelNotFoundError
from featstore.extraction.dinov2_specs import (
    CHECKPOINT_IMG_SIZE,
    MODEL_SPECS,
    PATCH_SIZE,
    Dinov2Spec,
)

__all__ = [
    "CHECKPOINT_IMG_SIZE",
    "MODEL_SPECS",
    "PATCH_SIZE",
    "DinoVisionTransformer",
    "Dinov2Spec",
    "build_model",
    "load_checkpoint",
    "load_hub_model",
]


class LayerScale(nn.Module):
    """Per-channel scale of a residual branch (`gamma`, as in the checkpoint)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class PatchEmbed(nn.Module):
    """Non-overlapping 14x14 patches to tokens: (N, 3, H, W) -> (N, H/14 * W/14, D)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=PATCH_SIZE, stride=PATCH_SIZE)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused, biased qkv projection."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        # Same (3, heads, head_dim) split of the qkv output as the official code.
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).unbind(2)
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        )
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """GELU MLP with hidden width 4 * dim (ViT-S/B/L)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwiGLUFFN(nn.Module):
    """SwiGLU feed-forward of ViT-g (the official `SwiGLUFFNFused`: w12 packs w1 and w2)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        # Official width rule: 2/3 of 4*dim, rounded up to a multiple of 8 (4096 for g).
        hidden = (int(4 * dim * 2 / 3) + 7) // 8 * 8
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale on both residual branches."""

    def __init__(self, spec: Dinov2Spec) -> None:
        super().__init__()
        dim = spec.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, spec.num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp: nn.Module = SwiGLUFFN(dim) if spec.ffn == "swiglu" else Mlp(dim)
        self.ls2 = LayerScale(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoVisionTransformer(nn.Module):
    """DINOv2 ViT backbone whose parameters match the official checkpoints key for key."""

    def __init__(self, spec: Dinov2Spec) -> None:
        super().__init__()
        self.spec = spec
        dim = spec.embed_dim
        grid = CHECKPOINT_IMG_SIZE // PATCH_SIZE
        self.patch_embed = PatchEmbed(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        if spec.num_register_tokens:
            self.register_tokens = nn.Parameter(torch.zeros(1, spec.num_register_tokens, dim))
        self.blocks = nn.ModuleList(Block(spec) for _ in range(spec.depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        # Unused at inference but part of every released checkpoint, so strict loading needs it.
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self._pos_cache: dict[tuple[Any, ...], Tensor] = {}

    def _interpolate_pos_encoding(self, rows: int, cols: int, dtype: torch.dtype) -> Tensor:
        """Position embedding for a rows x cols patch grid, exactly as the hub model computes it.

        The official code names the input's height `w` and its width `h`; the first scale
        factor / size entry always applies to the rows.
        """
        pos: Tensor = self.pos_embed
        m = int(math.sqrt(pos.shape[1] - 1))
        if rows * cols == m * m and rows == cols:
            return pos  # no interpolation (and no dtype change) at the checkpoint's size
        pos = pos.float()
        patch_pos = pos[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2)
        if self.spec.interpolate_offset:
            # The historical +0.1 changes the bicubic sampling positions, so it must be kept.
            off = self.spec.interpolate_offset
            kwargs: dict[str, Any] = {"scale_factor": ((rows + off) / m, (cols + off) / m)}
        else:
            kwargs = {"size": (rows, cols)}
        patch_pos = F.interpolate(
            patch_pos, mode="bicubic", antialias=self.spec.interpolate_antialias, **kwargs
        )
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
        return torch.cat((pos[:, :1], patch_pos), dim=1).to(dtype)

    def pos_encoding(self, rows: int, cols: int, dtype: torch.dtype) -> Tensor:
        """`_interpolate_pos_encoding`, cached per grid while no gradient is being recorded."""
        if torch.is_grad_enabled() and self.pos_embed.requires_grad:
            return self._interpolate_pos_encoding(rows, cols, dtype)
        p = self.pos_embed
        # data_ptr and _version change when the parameter is replaced or written in place.
        key = (rows, cols, dtype, p.device, p.dtype, p.data_ptr(), p._version)
        hit = self._pos_cache.get(key)
        if hit is None:
            if len(self._pos_cache) > 16:
                self._pos_cache.clear()
            hit = self._pos_cache[key] = self._interpolate_pos_encoding(rows, cols, dtype)
        return hit

    def forward(self, x: Tensor) -> Tensor:
        """Embed a batch of normalised images.

        Args:
            x: (N, 3, H, W) images, H and W multiples of 14.

        Returns:
            (N, embed_dim) CLS token after the final LayerNorm.
        """
        n, _, h, w = x.shape
        if h % PATCH_SIZE or w % PATCH_SIZE:
            raise InputError(f"DINOv2 input must be a multiple of {PATCH_SIZE} pixels, got {h}x{w}")
        tokens = self.patch_embed(x)
        tokens = torch.cat((self.cls_token.expand(n, -1, -1), tokens), dim=1)
        tokens = tokens + self.pos_encoding(h // PATCH_SIZE, w // PATCH_SIZE, tokens.dtype)
        if self.spec.num_register_tokens:
            # Registers go after the CLS token and carry no position embedding.
            regs = self.register_tokens.expand(n, -1, -1)
            tokens = torch.cat((tokens[:, :1], regs, tokens[:, 1:]), dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        # LayerNorm is per token, so normalising only the CLS token gives the same values.
        return self.norm(tokens[:, 0])


def _unknown(name: str) -> InputError:
    return InputError(f"unknown DINOv2 model '{name}'; known models: {', '.join(MODEL_SPECS)}")


def build_model(name: str) -> DinoVisionTransformer:
    """Build the named backbone with placeholder weights (load a checkpoint next).

    Build under `with torch.device("meta"):` to skip allocating them; `load_checkpoint`
    then takes over the checkpoint's tensors instead of copying into them.
    """
    if name not in MODEL_SPECS:
        raise _unknown(name)
    return DinoVisionTransformer(MODEL_SPECS[name])


def _hint_file(name: str) -> str:
    stem = MODEL_SPECS[name].checkpoint_stem if name in MODEL_SPECS else name
    return f"Hint: give the official {stem}_pretrain.pth as weights= (CLI: --weights)."


def check_checkpoint(path: Path, name: str) -> None:
    """Check that `path` holds `name`'s weights (keys and shapes), without loading them.

    The tensors are memory-mapped, not read, so every model of a run can be checked
    before any work starts.

    Raises:
        ModelNotFoundError, ModelLoadError: as `load_checkpoint`.
    """
    if name not in MODEL_SPECS:
        raise _unknown(name)
    with torch.device("meta"):
        expected = dict(build_model(name).named_parameters())
    _check_layout(_read_state_dict(Path(path), name, mmap=True), expected, Path(path), name)


def _read_state_dict(path: Path, name: str, *, mmap: bool = False) -> dict[str, Tensor]:
    """The tensors of checkpoint `path`, unwrapped from a `model`/`state_dict` entry."""
    if not path.is_file():
        raise ModelNotFoundError(f"DINOv2 weights file not found: {path}\n{_hint_file(name)}")
    try:
        # mmap needs the zip format (every torch.save since 1.6); older files are read whole.
        mmap = mmap and zipfile.is_zipfile(path)
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # torch raises many types for a non-checkpoint file
        first_line = (str(exc).splitlines() or [""])[0]
        if "Weights only load failed" in first_line:
            # torch's own advice (weights_only=False) would run the file's pickled code.
            first_line = "it holds Python objects besides tensors, which featstore never unpickles"
        raise ModelLoadError(
            f"{path} is not a readable torch checkpoint ({type(exc).__name__}: {first_line})\n"
            + _hint_file(name)
        ) from exc
    if isinstance(state, dict) and "cls_token" not in state:
        state = next((state[w] for w in ("model", "state_dict") if w in state), state)
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ModelLoadError(
            f"{path} does not hold a state dict of tensors (found {type(state).__name__})\n"
            + _hint_file(name)
        )
    return state


def _check_layout(
    state: dict[str, Tensor], expected: Mapping[str, Tensor], path: Path, name: str
) -> None:
    """Raise ModelLoadError listing what differs between `state` and `expected` (if anything)."""

    def first(items: list[str], n: int = 5) -> str:
        return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")

    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: expected {list(v.shape)} found {list(state[k].shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if not (missing or unexpected or mismatched):
        return
    lines = [f"{path} does not hold {name} weights:"]
    if mismatched:
        lines.append(f"  shape mismatch in {len(mismatched)} tensors: {first(mismatched, 3)}")
    if missing:
        lines.append(f"  missing keys ({len(missing)}): {first(missing)}")
    if unexpected:
        lines.append(f"  unexpected keys ({len(unexpected)}): {first(unexpected)}")
    # Guess the released model from the token width, block count and registers.
    width = state["cls_token"].shape[-1] if "cls_token" in state else None
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    regs = "register_tokens" in state
    guess = [
        s.name
        for s in MODEL_SPECS.values()
        if (s.embed_dim, s.depth, bool(s.num_register_tokens)) == (width, depth, regs)
    ]
    if guess and guess[0] != name:
        lines.append(
            f"Hint: this looks like a {guess[0]} checkpoint: use model {guess[0]!r} "
            f"(CLI: --model {guess[0]})."
        )
    else:
        lines.append(_hint_file(name))
    raise ModelLoadError("\n".join(lines))


def load_checkpoint(model: DinoVisionTransformer, path: Path, name: str) -> None:
    """Load an official-format DINOv2 state dict into `model`, strictly.

    Raises:
        ModelNotFoundError: `path` does not exist.
        ModelLoadError: the file is not a torch checkpoint, or not one of model `name`.
    """
    path = Path(path)
    state = _read_state_dict(path, name)
    params = dict(model.named_parameters())
    _check_layout(state, params, path, name)
    # A model built on the meta device has no storage to copy into: take the tensors over.
    assign = any(p.is_meta for p in params.values())
    if assign:
        state = {k: v.to(params[k].dtype) for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True, assign=assign)
    except RuntimeError as exc:
        raise ModelLoadError(f"{path}: cannot load into {name}: {exc}") from exc


class _HubClsToken(nn.Module):
    """Wraps the official hub model so `forward` returns (N, D) `x_norm_clstoken`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model: Any = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model.forward_features(x)["x_norm_clstoken"]


def load_hub_model(
    name: str,
    weights_path: Path,
    repo: str = "facebookresearch/dinov2:main",
    source: str = "github",
) -> nn.Module:
    """Build the official implementation through torch.hub and load `weights_path` into it.

    Args:
        name: a key of `MODEL_SPECS`.
        weights_path: official-format state dict (see
            `featstore.extraction.weights.resolve_weights`).
        repo: hub repository (`owner/name:ref`; the ref spares torch.hub a network probe),
            or a local clone's path with `source="local"`.
        source: "github" or "local", as for `torch.hub.load`.

    Raises:
        ModelNotFoundError: the hub code is neither cached nor downloadable.
        ModelLoadError: the weights do not fit the model.
    """
    if name not in MODEL_SPECS:
        raise _unknown(name)
    old_timeout = socket.getdefaulttimeout()
    try:
        # torch.hub's own urlopen calls have no timeout; bound them so nothing hangs offline.
        socket.setdefaulttimeout(10)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*xFormers.*")
            kwargs: dict[str, Any] = {"pretrained": False}
            if source == "github":
                kwargs.update(trust_repo=True, skip_validation=True, verbose=False)
            model = torch.hub.load(repo, name, source=source, **kwargs)
    except Exception as exc:
        raise ModelNotFoundError(
            f"cannot load the official DINOv2 code {repo} ({source}) through torch.hub "
            f"(cache: {torch.hub.get_dir()}): {type(exc).__name__}: {exc}\n"
            "Hint: use the default --dinov2-source (featstore's own implementation of the "
            "same model, needs no code download)."
        ) from exc
    finally:
        socket.setdefaulttimeout(old_timeout)
    path = Path(weights_path)
    state = _read_state_dict(path, name)
    _check_layout(state, model.state_dict(), path, name)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"{path}: cannot load into the hub's {name}: {exc}") from exc
    return _HubClsToken(model.eval())
