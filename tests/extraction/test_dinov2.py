"""featstore.extraction.dinov2 and .weights: checkpoint layout, numerics, loading and lookup."""

from __future__ import annotations

import hashlib
import io
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from featstore.errors import InputError, ModelLoadError, ModelNotFoundError
from featstore.extraction.dinov2 import MODEL_SPECS, build_model, load_checkpoint, load_hub_model
from featstore.extraction.weights import file_sha256, parse_weights_options, resolve_weights
from featstore.synthetic.dinov2_checkpoint import (
    official_state_dict_shapes,
    write_random_dinov2_checkpoint,
)

SMALL = "dinov2_vits14"


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dinov2")


@pytest.fixture(scope="module")
def small_ckpt(ckpt_dir: Path) -> Path:
    return write_random_dinov2_checkpoint(ckpt_dir / "vits14.pth", SMALL, seed=0)


@pytest.fixture(scope="module")
def small_model(small_ckpt: Path) -> torch.nn.Module:
    model = build_model(SMALL)
    load_checkpoint(model, small_ckpt, SMALL)
    return model.eval()


# (a) layout ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODEL_SPECS))
def test_state_dict_matches_official_layout(name: str) -> None:
    with torch.device("meta"):
        model = build_model(name)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == official_state_dict_shapes(name)


def test_model_names_and_unknown_name() -> None:
    assert set(MODEL_SPECS) == {f"dinov2_vit{s}14{r}" for s in "sblg" for r in ("", "_reg")}
    with pytest.raises(InputError, match="dinov2_vitb14.*dinov2_vitg14_reg"):
        build_model("dinov2_vitx14")


# (b) loading and numerics -------------------------------------------------------------


def test_forward_shape_deterministic_batch_independent(small_model: torch.nn.Module) -> None:
    x = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        out = small_model(x)
        again = small_model(x)
        singles = torch.cat([small_model(x[i : i + 1]) for i in range(3)])
    assert out.shape == (3, 384)
    assert out.dtype == torch.float32
    assert torch.equal(out, again)
    torch.testing.assert_close(singles, out, atol=1e-5, rtol=0)
    # Not normalised here (the caller normalises) and not degenerate.
    assert not torch.allclose(out.norm(dim=1), torch.ones(3))
    assert (out[0] - out[1]).abs().max() > 1e-2


def test_meta_built_model_takes_checkpoint_tensors(small_ckpt: Path, small_model) -> None:
    with torch.device("meta"):
        model = build_model(SMALL)
    load_checkpoint(model, small_ckpt, SMALL)
    x = torch.randn(1, 3, 28, 42)
    with torch.inference_mode():
        torch.testing.assert_close(model.eval()(x), small_model(x), atol=0, rtol=0)


def test_registers_model_runs(ckpt_dir: Path) -> None:
    name = "dinov2_vits14_reg"
    model = build_model(name)
    load_checkpoint(model, write_random_dinov2_checkpoint(ckpt_dir / "reg.pth", name), name)
    with torch.inference_mode():
        assert model.eval()(torch.randn(2, 3, 56, 56)).shape == (2, 384)


def test_input_not_multiple_of_patch(small_model: torch.nn.Module) -> None:
    with pytest.raises(InputError, match="multiple of 14"):
        small_model(torch.zeros(1, 3, 225, 224))


# (c) position-embedding interpolation ---------------------------------------------------


def test_no_interpolation_at_checkpoint_size(small_model) -> None:
    pos = small_model.pos_encoding(37, 37, torch.float32)
    assert pos is small_model.pos_embed


def test_interpolation_at_224_matches_official_formula(small_model) -> None:
    pos = small_model.pos_embed.detach()
    grid = pos[:, 1:].reshape(1, 37, 37, 384).permute(0, 3, 1, 2)
    expect = F.interpolate(
        grid, mode="bicubic", scale_factor=((16 + 0.1) / 37,) * 2, antialias=False
    )
    expect = torch.cat((pos[:, :1], expect.permute(0, 2, 3, 1).reshape(1, 256, 384)), dim=1)
    with torch.inference_mode():
        got = small_model.pos_encoding(16, 16, torch.float32)
        cached = small_model.pos_encoding(16, 16, torch.float32)
    assert got.shape == (1, 257, 384)
    assert torch.equal(got, expect)
    assert cached is got
    # The +0.1 offset matters: an output-size interpolation differs.
    by_size = F.interpolate(grid, size=(16, 16), mode="bicubic", antialias=False)
    assert not torch.allclose(by_size.permute(0, 2, 3, 1).reshape(1, 256, 384), got[:, 1:])


def test_interpolation_rows_first_and_registers_use_size() -> None:
    model = build_model("dinov2_vits14_reg")
    with torch.no_grad():
        model.pos_embed.normal_()
    pos = model.pos_embed.detach()
    grid = pos[:, 1:].reshape(1, 37, 37, 384).permute(0, 3, 1, 2)
    expect = F.interpolate(grid, size=(16, 22), mode="bicubic", antialias=True)
    with torch.no_grad():
        got = model.pos_encoding(16, 22, torch.float32)
    assert torch.equal(got[:, 1:], expect.permute(0, 2, 3, 1).reshape(1, 16 * 22, 384))


def test_cache_invalidated_when_weights_change(small_ckpt: Path, ckpt_dir: Path) -> None:
    model = build_model(SMALL)
    load_checkpoint(model, small_ckpt, SMALL)
    with torch.no_grad():
        first = model.pos_encoding(16, 16, torch.float32)
    other = write_random_dinov2_checkpoint(ckpt_dir / "other.pth", SMALL, seed=5)
    load_checkpoint(model, other, SMALL)
    with torch.no_grad():
        second = model.pos_encoding(16, 16, torch.float32)
        model.pos_embed.mul_(2)
        third = model.pos_encoding(16, 16, torch.float32)
    assert not torch.equal(first, second)
    torch.testing.assert_close(third, 2 * second)


# (d) load errors -----------------------------------------------------------------------


def test_wrong_model_checkpoint(small_ckpt: Path) -> None:
    with torch.device("meta"):
        model = build_model("dinov2_vitb14")
    with pytest.raises(ModelLoadError) as err:
        load_checkpoint(model, small_ckpt, "dinov2_vitb14")
    msg = str(err.value)
    assert str(small_ckpt) in msg
    assert "cls_token: expected [1, 1, 768] found [1, 1, 384]" in msg
    assert "Hint: this looks like a dinov2_vits14 checkpoint: use model 'dinov2_vits14'" in msg
    assert "(CLI: --model dinov2_vits14)" in msg


def test_missing_and_unexpected_keys(small_ckpt: Path, tmp_path: Path) -> None:
    state = torch.load(small_ckpt, weights_only=True)
    state["register_tokens"] = torch.zeros(1, 4, 384)
    del state["norm.bias"]
    path = tmp_path / "odd.pth"
    torch.save({"model": state}, path)  # a trivial wrapper is unwrapped
    with pytest.raises(ModelLoadError, match=r"missing keys \(1\): norm\.bias") as err:
        load_checkpoint(build_model(SMALL), path, SMALL)
    assert "unexpected keys (1): register_tokens" in str(err.value)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "notes.pth"
    path.write_text("not a checkpoint\n")
    with pytest.raises(ModelLoadError, match=r"notes\.pth is not a readable torch checkpoint"):
        load_checkpoint(build_model(SMALL), path, SMALL)
    torch.save({"cls_token": torch.zeros(1), "opt": Path("x")}, path)  # a pickled object
    with pytest.raises(ModelLoadError, match="Python objects besides tensors") as err:
        load_checkpoint(build_model(SMALL), path, SMALL)
    assert "weights_only" not in str(err.value)  # torch's unsafe advice is never repeated
    torch.save([1, 2, 3], path)
    with pytest.raises(ModelLoadError, match="does not hold a state dict"):
        load_checkpoint(build_model(SMALL), path, SMALL)
    with pytest.raises(ModelNotFoundError, match="absent.pth"):
        load_checkpoint(build_model(SMALL), tmp_path / "absent.pth", SMALL)


# (e) finding weights ---------------------------------------------------------------------


@pytest.fixture
def hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FEATSTORE_NO_DOWNLOAD", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    # torch.hub.set_dir wins over TORCH_HOME and persists: undo any earlier call.
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    return tmp_path / "torch" / "hub"


def test_override_missing(hub_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"not found: .*nope\.pth"):
        resolve_weights(SMALL, tmp_path / "nope.pth")
    given = tmp_path / "given.pth"
    given.write_bytes(b"x")
    assert resolve_weights(SMALL, given) == given


def test_found_in_hub_cache(hub_dir: Path) -> None:
    path = hub_dir / "checkpoints" / "dinov2_vits14_reg4_pretrain.pth"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x")
    assert resolve_weights("dinov2_vits14_reg", None) == path


def test_nothing_found_lists_every_place(hub_dir: Path) -> None:
    with pytest.raises(ModelNotFoundError) as err:
        resolve_weights("dinov2_vitb14_reg", None)
    msg = str(err.value)
    assert str(hub_dir / "checkpoints" / "dinov2_vitb14_reg4_pretrain.pth") in msg
    assert str(hub_dir / "checkpoints" / "dinov2_vitb14_reg_pretrain.pth") in msg
    url = "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_reg4_pretrain.pth"
    assert f"{url} (download skipped: FEATSTORE_NO_DOWNLOAD" in msg
    assert "Hint:" in msg
    with pytest.raises(InputError, match="unknown DINOv2 model"):
        resolve_weights("vit_tiny", None)


class _FakeResponse(io.BytesIO):
    headers = {"Content-Length": "5"}


def test_download_into_hub_cache(hub_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEATSTORE_NO_DOWNLOAD")
    urls: list[str] = []

    def fake_urlopen(url: str, timeout: float) -> _FakeResponse:
        assert timeout <= 10
        urls.append(url)
        return _FakeResponse(b"bytes")

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    path = resolve_weights(SMALL, None)
    assert path == hub_dir / "checkpoints" / "dinov2_vits14_pretrain.pth"
    assert path.read_bytes() == b"bytes"
    assert urls == [
        "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth"
    ]
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp file left


def test_download_failure_is_reported(hub_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEATSTORE_NO_DOWNLOAD")

    def offline(url: str, timeout: float) -> _FakeResponse:
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(ModelNotFoundError, match="download failed: URLError.*no route to host"):
        resolve_weights(SMALL, None)
    assert not any((hub_dir / "checkpoints").iterdir())


def test_hub_source_unavailable(small_ckpt: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="Hint: use the default --dinov2-source"):
        load_hub_model(SMALL, small_ckpt, repo=str(tmp_path / "no-repo"), source="local")


def test_file_sha256(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc" * 1_000_000)

    assert file_sha256(path) == hashlib.sha256(b"abc" * 1_000_000).hexdigest()


def test_file_sha256_sees_a_file_rewritten_in_place(tmp_path: Path) -> None:
    """The per-process memo must not return the old digest of a changed checkpoint, even
    one rewritten to the same size with its mtime put back."""
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc" * 1_000)
    before = path.stat()
    assert file_sha256(path) == hashlib.sha256(b"abc" * 1_000).hexdigest()
    path.write_bytes(b"xyz" * 1_000)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert file_sha256(path) == hashlib.sha256(b"xyz" * 1_000).hexdigest()
    replacement = tmp_path / "new.bin"
    replacement.write_bytes(b"abc" * 1_000)
    replacement.replace(path)  # a new file under the old name
    assert file_sha256(path) == hashlib.sha256(b"abc" * 1_000).hexdigest()


def test_parse_weights_options(tmp_path: Path) -> None:
    one = [SMALL]
    two = [SMALL, "dinov2_vitb14"]
    assert parse_weights_options([], two) == {}
    assert parse_weights_options(["/w/a.pth"], one) == {SMALL: Path("/w/a.pth")}
    assert parse_weights_options([f"{SMALL}=/w/a.pth"], one) == {SMALL: Path("/w/a.pth")}
    assert parse_weights_options([f"{SMALL}=a.pth", "dinov2_vitb14=b=1.pth"], two) == {
        SMALL: Path("a.pth"),
        "dinov2_vitb14": Path("b=1.pth"),
    }
    with pytest.raises(InputError, match="use --weights MODEL=PATH"):
        parse_weights_options(["/w/a.pth"], two)
    with pytest.raises(InputError, match="not among the requested models"):
        parse_weights_options(["dinov2_vitl14=/w/a.pth"], two)
    with pytest.raises(InputError, match="not among the requested models"):
        parse_weights_options(["dinov2_vitx14=/w/a.pth"], one)
    with pytest.raises(InputError, match="given twice"):
        parse_weights_options([f"{SMALL}=a.pth", f"{SMALL}=b.pth"], two)
    with pytest.raises(InputError, match="empty path"):
        parse_weights_options([f"{SMALL}="], one)
    odd = tmp_path / "lr=0.1.pth"  # an existing file whose name holds '='
    odd.write_bytes(b"x")
    assert parse_weights_options([str(odd)], one) == {SMALL: odd}
