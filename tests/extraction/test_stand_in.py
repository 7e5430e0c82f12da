"""Stand-in models say so: the files carry a marker, and every output over them repeats it."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch
from click.testing import CliRunner
from conftest import MODEL, Extracted, Models
from featstore_cli.main import main

from featstore.errors import ModelNotFoundError
from featstore.extraction.detection import DetectorSettings, find_detector_file
from featstore.extraction.stand_in import checkpoint_marker, offline_route, onnx_marker
from featstore.report.build import write_report
from featstore.store.format import STAND_IN_KEY
from featstore.store.store import Store
from featstore.synthetic.detector import build_detector_model
from featstore.synthetic.dinov2_checkpoint import random_dinov2_state_dict

README = Path(__file__).resolve().parents[2] / "README.md"
LOUD = "STAND-IN MODELS, NOT REAL ONES"


def test_the_files_carry_the_marker(models: Models, tmp_path: Path) -> None:
    assert "random-weight" in (checkpoint_marker(models.weights) or "")
    torch.load(models.weights, weights_only=True, mmap=True)  # still a plain checkpoint
    pack = models.insightface_root / "models" / "buffalo_l"
    assert "synthetic face detector" in (onnx_marker(pack / "det_10g.onnx") or "")
    assert "synthetic recognition" in (onnx_marker(pack / "w600k_r50.onnx") or "")
    # Files without the marker (real models) are not called stand-ins.
    plain = tmp_path / "plain.pth"
    torch.save(random_dinov2_state_dict(MODEL), plain)
    assert checkpoint_marker(plain) is None
    model = build_detector_model()
    del model.metadata_props[:]
    onnx.save_model(model, tmp_path / "det.onnx")
    assert onnx_marker(tmp_path / "det.onnx") is None


def test_summary_provenance_info_and_report_say_stand_in(
    extracted: Extracted, tmp_path: Path
) -> None:
    lines = extracted.summary.format().splitlines()
    assert lines[0].startswith("!! " + LOUD), lines
    provenance = Store(extracted.store).model(MODEL).provenance
    assert set(provenance[STAND_IN_KEY]) == {"detector", MODEL}
    info = CliRunner().invoke(main, ["info", "--store", str(extracted.store)])
    assert info.exit_code == 0 and f"!! {LOUD}" in info.output, info.output
    out = tmp_path / "r.html"
    write_report(extracted.store, out=out, gallery_identities=0)
    page = out.read_text()
    overview = page[page.index("id='overview'") :]
    assert overview.index(LOUD) < overview.index("<table"), "said before the numbers"


def test_missing_pack_message_shows_the_offline_route(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        find_detector_file(DetectorSettings(root=tmp_path))
    message = str(caught.value)
    assert offline_route() in message
    assert "--weights demo-output/models/dinov2_vits14_random_pretrain.pth" in message
    # The README documents the same command, for a tree at data/face and data/video.
    command = offline_route().split("\n", 1)[1]
    readme_command = command.replace("YOUR/face", "data/face").replace("YOUR/video", "data/video")
    assert readme_command in README.read_text("utf-8")
