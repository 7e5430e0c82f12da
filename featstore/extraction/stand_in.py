"""Stand-in models: a marker that the model files themselves carry.

`featstore.synthetic` makes random-weight DINOv2 checkpoints and a synthetic InsightFace
pack so that tests and `featstore demo` run offline. Their outputs look real (a synthetic
detector scores a wall 0.999), so each file says what it is, wherever it is copied or
renamed: a checkpoint holds an extra zip entry `<archive>/featstore_stand_in` (torch.load
reads only the entries its pickle names, so the file stays a valid checkpoint), an ONNX
model a `metadata_props` entry `featstore_stand_in`. Extraction reads the markers into
the provenance (`featstore.store.format.STAND_IN_KEY`), from where the summary, `info`,
the report and every reader of the table see it.
"""

from __future__ import annotations

import shlex
import zipfile
from pathlib import Path
from typing import Any

MARKER = "featstore_stand_in"


def mark_checkpoint(path: Path, why: str) -> None:
    """Add the marker to a `torch.save` (zip format) checkpoint."""
    with zipfile.ZipFile(path, "a") as archive:
        prefix = archive.namelist()[0].split("/")[0]
        archive.writestr(f"{prefix}/{MARKER}", why)


def checkpoint_marker(path: Path) -> str | None:
    """The marker of a checkpoint, or None for a real one (or an unreadable file)."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith("/" + MARKER)), None)
            return archive.read(name).decode("utf-8", "replace") if name else None
    except (OSError, zipfile.BadZipFile):  # legacy (non-zip) checkpoints are never ours
        return None


def mark_onnx(model: Any, why: str) -> None:
    """Add the marker to an `onnx.ModelProto` before it is saved."""
    entry = model.metadata_props.add()
    entry.key, entry.value = MARKER, why


def onnx_marker(path: Path) -> str | None:
    """The marker of an ONNX model file, or None for a real one."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # the loader reports unreadable files; here it is simply not ours
        return None
    return next((p.value for p in model.metadata_props if p.key == MARKER), None)


# What `featstore demo` (featstore.demo) writes into its workdir, `demo-output` by default.
STAND_IN_MODEL = "dinov2_vits14"
DEMO_WEIGHTS = Path("models") / f"{STAND_IN_MODEL}_random_pretrain.pth"
DEMO_INSIGHTFACE_ROOT = Path("models") / "insightface"


def extract_command(face_dir: Path, video_dir: Path, store: Path, demo_dir: Path) -> str:
    """The `featstore extract` command line that runs the demo's stand-in models."""
    args = [
        ("--face-dir", face_dir),
        ("--video-dir", video_dir),
        ("--store", store),
        ("--model", STAND_IN_MODEL),
        ("--weights", demo_dir / DEMO_WEIGHTS),
        ("--insightface-root", demo_dir / DEMO_INSIGHTFACE_ROOT),
    ]
    return "featstore extract " + " \\\n    ".join(
        f"{flag} {shlex.quote(str(value))}" for flag, value in args
    )


def offline_route() -> str:
    """How to try the pipeline on one's own photos without the real models (README too)."""
    command = extract_command(
        Path("YOUR/face"), Path("YOUR/video"), Path("try-store"), Path("demo-output")
    )
    return (
        "To try the pipeline offline on your own photos first, run `featstore demo` (it "
        "writes stand-in models into demo-output/: a synthetic detector and random DINOv2 "
        "weights, whose every output is meaningless, as the store then says), then:\n" + command
    )
