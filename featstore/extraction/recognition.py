"""Identity embeddings: InsightFace's ArcFace recognition model of the pack (docs/formats.md).

For each image with a face: `insightface.utils.face_align.norm_crop` aligns the image to
the model's square input (112x112) with the five detected keypoints, `ArcFaceONNX.get_feat`
runs the crops of a batch in one session call, and each row is L2-normalised as
InsightFace's `Face.normed_embedding` is. The result equals `ArcFaceONNX.get(img, face)`
followed by `face.normed_embedding` on the same detection (`tests/extraction/test_recognition.py`).

The pixels are the run's decoded image (Pillow, RGB): the decoding workers keep the full
image for this model (`DecodedBatch.image_rgb`), because the crop needs the keypoints,
which exist only after detection. `norm_crop` warps the RGB image and the crop's channels
are then reversed to BGR: the warp treats channels independently (same matrix, same
bilinear weights, border value 0 in every channel), so this is bit for bit the crop of
the BGR image InsightFace expects, without a BGR copy of the whole image.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from featstore.errors import ModelLoadError, ModelNotFoundError
from featstore.extraction.decoding import DecodedBatch
from featstore.extraction.detection import Detection, DetectorSettings, onnx_providers
from featstore.store.consistency import ARCFACE_PREFIX

ARCFACE = "arcface"  # what --model asks for; stored as arcface_<pack>
PREPROCESSING = "pil-rgb/insightface-norm_crop(kps)/bgr/arcface_onnx-get_feat/normed_embedding"


def is_arcface(name: str) -> bool:
    return name == ARCFACE or name.startswith(ARCFACE_PREFIX)


@dataclass(frozen=True)
class ArcFaceRef:
    """The recognition model of an InsightFace pack, found and checksummed, not loaded."""

    name: str  # arcface_<pack>
    pack: str
    model_file: Path
    weights_sha256: str
    dim: int
    input_size: int


def resolve_arcface(name: str, settings: DetectorSettings) -> ArcFaceRef:
    """The pack's recognition model for `--model arcface` (or `arcface_<pack>`).

    Raises:
        ModelNotFoundError: another pack's name, or the pack has no recognition model (the
            message lists each file of the pack and what InsightFace routes it to).
    """
    from featstore.extraction.weights import file_sha256

    stored = f"{ARCFACE_PREFIX}{settings.pack}"
    if name not in (ARCFACE, stored):
        raise ModelNotFoundError(
            f"--model {name!r}: the recognition model of pack {settings.pack!r} is stored as "
            f"{stored!r}.\nHint: pass --model arcface (or --pack {name[len(ARCFACE_PREFIX) :]})."
        )
    pack_dir = settings.pack_dir
    files = sorted(pack_dir.glob("*.onnx")) if pack_dir.is_dir() else []
    for path in files:
        shape = _recognition_shape(path)
        if shape is not None:
            return ArcFaceRef(stored, settings.pack, path, file_sha256(path), *shape)
    raise ModelNotFoundError(_no_recognition_message(settings, files))


def _recognition_shape(path: Path) -> tuple[int, int] | None:
    """(output dim, input size) when InsightFace's router would make `path` an ArcFaceONNX.

    The same rules as `insightface.model_zoo.model_zoo.ModelRouter`, read from the graph's
    declared shapes without creating a session (the big models stay unloaded).
    """
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # not an ONNX file: the error message lists it as unreadable
        return None
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(graph.output) != 1 or not inputs:
        return None
    in_dims = [d.dim_value or None for d in inputs[0].type.tensor_type.shape.dim]
    out_dims = [d.dim_value or None for d in graph.output[0].type.tensor_type.shape.dim]
    if len(in_dims) != 4 or len(out_dims) != 2 or not out_dims[1]:
        return None
    height, width = in_dims[2], in_dims[3]
    if not height or height != width or height < 112 or height % 16 or height in (192, 96):
        return None
    if len(inputs) == 2 and height == 128:  # INSwapper
        return None
    return int(out_dims[1]), int(height)


def insightface_routes(files: Sequence[Path]) -> dict[str, str]:
    """What InsightFace's own `model_zoo.get_model` makes of each file (loads each one)."""
    from insightface.model_zoo import get_model

    routes = {}
    for path in files:
        try:
            model = get_model(str(path), providers=["CPUExecutionProvider"])
            routes[path.name] = (
                "nothing (InsightFace cannot route it)"
                if model is None
                else f"{type(model).__name__} ({getattr(model, 'taskname', '?')})"
            )
        except Exception as exc:  # a file InsightFace cannot read is reported, not raised
            routes[path.name] = f"unreadable: {type(exc).__name__}: {exc}".splitlines()[0]
    return routes


def _no_recognition_message(settings: DetectorSettings, files: Sequence[Path]) -> str:
    pack_dir = settings.pack_dir
    if not files:
        found = "  (no .onnx files)" if pack_dir.is_dir() else "  (the folder does not exist)"
    else:
        found = "\n".join(f"  {n} -> {r}" for n, r in insightface_routes(files).items())
    return (
        f"--model arcface: InsightFace pack {settings.pack!r} ({pack_dir}) has no recognition "
        f"model (one InsightFace routes to ArcFaceONNX: one output, a square input of 112 "
        f"or more).\nIts files, and what InsightFace routes each to:\n{found}\n"
        "Hint: use a pack that ships one (buffalo_l has w600k_r50.onnx), or pass "
        "--insightface-root / --pack for it."
    )


class ArcFaceEmbedder:
    """The recognition model of the pack, loaded through InsightFace's model zoo."""

    def __init__(self, ref: ArcFaceRef, *, device: str = "cpu") -> None:
        from insightface.model_zoo import get_model
        from insightface.model_zoo.arcface_onnx import ArcFaceONNX

        self.ref = ref
        try:
            model = get_model(str(ref.model_file), providers=onnx_providers(device))
        except Exception as exc:
            raise ModelLoadError(
                f"InsightFace could not load the recognition model {ref.model_file}: {exc}"
            ) from exc
        if not isinstance(model, ArcFaceONNX):
            raise ModelLoadError(
                f"{ref.model_file}: InsightFace routes it to {type(model).__name__}, not "
                "ArcFaceONNX; featstore needs the pack's recognition model for --model arcface."
            )
        model.prepare(0 if device.startswith("cuda") else -1)
        self.model: Any = model
        batch_dim = model.session.get_inputs()[0].shape[0]
        # A model exported with a fixed batch of 1 runs crop by crop.
        self.accepts_batches = not isinstance(batch_dim, int) or batch_dim != 1

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def dim(self) -> int:
        return self.ref.dim

    def embed_batch(
        self, batch: DecodedBatch, rows: Sequence[int], detections: Sequence[Detection]
    ) -> NDArray[np.float32]:
        """The `Embedder` protocol: embeddings of `rows` of the batch, one detection each."""
        images = [batch.image_rgb(r) for r in rows]
        return self.embed_faces(images, [d.landmarks_2d for d in detections])

    def embed_faces(
        self, images_rgb: Sequence[NDArray[np.uint8]], keypoints: Sequence[NDArray[np.float32]]
    ) -> NDArray[np.float32]:
        """Normed embeddings `[N, D]` of the faces whose keypoints are given, one per image."""
        crops = [self.crop(img, kps) for img, kps in zip(images_rgb, keypoints, strict=True)]
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.accepts_batches:
            features = self.model.get_feat(crops)
        else:
            features = np.concatenate([self.model.get_feat(crop) for crop in crops])
        features = np.asarray(features, dtype=np.float32).reshape(len(crops), -1)
        return normed_rows(features)

    def crop(self, image_rgb: NDArray[np.uint8], kps: NDArray[np.float32]) -> NDArray[np.uint8]:
        """InsightFace's aligned crop, BGR (see the module docstring)."""
        from insightface.utils import face_align

        size = self.model.input_size[0]
        # insightface calls scikit-image's deprecated `SimilarityTransform.estimate`, which
        # warns on every image; the result is unchanged, and the warning is not the user's.
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*estimate.* is deprecated", category=FutureWarning
            )
            warped = face_align.norm_crop(image_rgb, landmark=kps, image_size=size)
        return np.ascontiguousarray(warped[:, :, ::-1])


def normed_rows(features: NDArray[np.float32]) -> NDArray[np.float32]:
    """Each row divided by its own 1-D norm, in float32: InsightFace's `Face.normed_embedding`
    (`embedding / np.linalg.norm(embedding)`) row by row.

    A norm over `axis=1` of the whole batch sums in another order and leaves some rows one
    ulp off, which breaks byte identity with the seed's `*_feature.npy`.
    """
    out = np.empty_like(features, dtype=np.float32)
    for i, row in enumerate(features):
        out[i] = row / np.linalg.norm(row)
    return out
