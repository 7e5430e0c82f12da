"""`featstore demo`: the whole extraction on a small generated dataset, offline.

The demo cannot download InsightFace or DINOv2 weights, so it builds the same stand-ins
the tests use: a random-weight `dinov2_vits14` checkpoint with the official layout and a
small synthetic InsightFace detector pack. The numbers are therefore meaningless as
features; everything else (decoding, detection through InsightFace, the real DINOv2
network, angles, the store, DuckDB) is the production path.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from featstore.extraction.detection import DetectorSettings
from featstore.extraction.pipeline import RuntimeOptions, extract
from featstore.extraction.summary import ExtractSummary
from featstore.report.build import ReportSummary, write_report
from featstore.synthetic.awkward import write_awkward_identities, write_bad_frames, write_orphans
from featstore.synthetic.detector import write_synthetic_insightface_pack
from featstore.synthetic.dinov2_checkpoint import write_random_dinov2_checkpoint
from featstore.synthetic.images import generate_face_tree

DEMO_MODEL = "dinov2_vits14"
DEMO_REPORT = "report.html"


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
            ("--model", DEMO_MODEL),
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
    if not (models / "insightface" / "models" / "buffalo_l").is_dir():
        write_synthetic_insightface_pack(models / "insightface")
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
        models=[DEMO_MODEL],
        weights={DEMO_MODEL: inputs.weights},
        detector=DetectorSettings(root=inputs.insightface_root),
        runtime=RuntimeOptions(progress=progress),
    )


def write_demo_report(workdir: Path) -> ReportSummary:
    """The HTML report of the demo store, written to `workdir/report.html`."""
    return write_report(workdir / "store", out=workdir / DEMO_REPORT)
