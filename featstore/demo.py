"""`featstore demo`: the whole extraction on a small generated dataset, offline.

The demo cannot download InsightFace or DINOv2 weights, so it builds the same stand-ins
the tests use: a random-weight `dinov2_vits14` checkpoint with the official layout and a
small synthetic InsightFace pack (a detector and a recognition model, so `--model
arcface` runs too). The numbers are therefore meaningless as features; everything else
(decoding, detection and ArcFace through InsightFace, the real DINOv2 network, angles,
the head pose, the store, DuckDB, face000's npy training directory) is the production
path.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from featstore.extraction.detection import DetectorSettings
from featstore.extraction.pipeline import RuntimeOptions, extract
from featstore.extraction.summary import ExtractSummary
from featstore.npy_dir.export import NpyExportSummary, export_npy
from featstore.report.build import ReportSummary, write_report
from featstore.synthetic.awkward import write_awkward_identities, write_bad_frames, write_orphans
from featstore.synthetic.detector import write_synthetic_insightface_pack
from featstore.synthetic.dinov2_checkpoint import write_random_dinov2_checkpoint
from featstore.synthetic.images import generate_face_tree
from featstore.synthetic.recognition import RECOGNITION_FILENAME

DEMO_MODEL = "dinov2_vits14"
DEMO_MODELS = (DEMO_MODEL, "arcface")  # ArcFace is stored as arcface_buffalo_l
DEMO_REPORT = "report.html"
DEMO_NPY = "npy"  # face000's npy training directory, exported from the ArcFace model


@dataclass(frozen=True)
class DemoInputs:
    face_dir: Path
    video_dir: Path
    insightface_root: Path
    weights: Path

    def extract_command(self, store: Path) -> str:
        """The `featstore extract` command line that reuses these stand-in models."""
        args = [
            ("--face-dir", self.face_dir),
            ("--video-dir", self.video_dir),
            ("--store", store),
            *(("--model", model) for model in DEMO_MODELS),
            ("--weights", self.weights),
            ("--insightface-root", self.insightface_root),
        ]
        return "featstore extract " + " \\\n    ".join(
            f"{flag} {shlex.quote(str(value))}" for flag, value in args
        )


def build_demo_inputs(
    workdir: Path, *, identities: int = 12, frames: int = 10, awkward: bool = True
) -> DemoInputs:
    """Generate the dataset (with awkward names and bad files) and stand-in models once."""
    data = workdir / "data"
    if not (data / "face").is_dir():
        face_dir, video_dir = generate_face_tree(
            data, identities=identities, frames_per_identity=frames
        )
        if awkward:
            write_awkward_identities(face_dir, video_dir)
            write_bad_frames(face_dir, video_dir)
            write_orphans(face_dir, video_dir)
    models = workdir / "models"
    weights = models / f"{DEMO_MODEL}_random_pretrain.pth"
    if not weights.exists():
        write_random_dinov2_checkpoint(weights, DEMO_MODEL)
    pack = models / "insightface" / "models" / "buffalo_l"
    if not (pack / RECOGNITION_FILENAME).is_file():  # also a demo folder made before ArcFace
        write_synthetic_insightface_pack(models / "insightface", with_recognition=True)
    return DemoInputs(data / "face", data / "video", models / "insightface", weights)


def run_demo(workdir: Path, *, progress: bool = True) -> ExtractSummary:
    """Build the demo inputs in `workdir` and extract them into `workdir/store`."""
    inputs = build_demo_inputs(workdir)
    return extract_demo(inputs, workdir / "store", progress=progress)


def extract_demo(inputs: DemoInputs, store: Path, *, progress: bool = True) -> ExtractSummary:
    """What `DemoInputs.extract_command` runs, from Python."""
    return extract(
        inputs.face_dir,
        inputs.video_dir,
        store,
        models=list(DEMO_MODELS),
        weights={DEMO_MODEL: inputs.weights},
        detector=DetectorSettings(root=inputs.insightface_root),
        runtime=RuntimeOptions(progress=progress),
    )


def write_demo_report(workdir: Path) -> ReportSummary:
    """The HTML report of the demo store, written to `workdir/report.html`."""
    return write_report(workdir / "store", out=workdir / DEMO_REPORT, model=DEMO_MODEL)


def export_demo_npy(workdir: Path) -> NpyExportSummary:
    """face000's npy training directory of the demo store's ArcFace model, `workdir/npy`."""
    return export_npy(workdir / "store", out=workdir / DEMO_NPY)
