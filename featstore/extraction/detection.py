"""Face detection with the detector of an InsightFace model pack, in batches.

Only the pack's detection model is loaded (not recognition, gender/age or landmarks).
InsightFace's own `SCRFD` object supplies the session, the model's layout (strides,
anchors, keypoints) and its NMS; featstore adds batching: images are letterboxed
exactly as `SCRFD.detect` does, stacked, run through the session once, and each
image's outputs are decoded with InsightFace's `distance2bbox` / `distance2kps`.
`tests/test_detection.py` checks the result equals `SCRFD.detect` image by image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from featstore.errors import ModelLoadError, ModelNotFoundError
from featstore.extraction.stand_in import offline_route

DEFAULT_INSIGHTFACE_ROOT = Path("~/.insightface")
DEFAULT_PACK = "buffalo_l"
DETECTOR_MIN_OUTPUTS = 5  # InsightFace routes a model with >= 5 outputs to its detector


@dataclass(frozen=True)
class DetectorSettings:
    """Where the detector comes from and how it is run (part of the provenance)."""

    root: Path = DEFAULT_INSIGHTFACE_ROOT
    pack: str = DEFAULT_PACK
    det_size: int = 640
    det_thresh: float = 0.5

    def __post_init__(self) -> None:
        # Python callers pass strings ("~/.insightface"); the rest of featstore asks a Path.
        object.__setattr__(self, "root", Path(self.root))

    @property
    def pack_dir(self) -> Path:
        return self.root.expanduser() / "models" / self.pack


@dataclass(frozen=True)
class Detection:
    """The highest-scoring face of one image, in the original image's pixels."""

    box: NDArray[np.float32]  # [4] x1, y1, x2, y2
    landmarks_2d: NDArray[np.float32]  # [5, 2]
    score: float


def onnx_providers(device: str) -> list[Any]:
    """onnxruntime providers for a featstore device string ("cpu", "cuda", "cuda:1")."""
    import onnxruntime

    if device.startswith("cuda"):
        available = onnxruntime.get_available_providers()
        if "CUDAExecutionProvider" not in available:
            raise ModelLoadError(
                f"device {device!r} asks for CUDA but onnxruntime offers only {available}.\n"
                + _cuda_hint()
            )
        device_id = int(device.split(":", 1)[1]) if ":" in device else 0
        return [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _cuda_hint() -> str:
    """What to do when CUDA was asked for: a GPU-less machine needs another device, not a wheel."""
    import torch

    cpu = "use the CPU: device='cpu' (CLI: --cpu)"
    if not torch.cuda.is_available():
        return f"Hint: this machine has no CUDA GPU that torch can see; {cpu}."
    return (
        "Hint: install onnxruntime-gpu in place of onnxruntime (pip uninstall onnxruntime && "
        f"pip install 'featstore-faces[gpu]'), or {cpu}."
    )


def _output_count(path: Path) -> int:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise ModelLoadError(f"{path} is not a readable ONNX model: {exc}") from exc
    return len(model.graph.output)


def find_detector_file(settings: DetectorSettings) -> Path:
    """The pack's detection model, found the way InsightFace tells models apart.

    Files named `det*` are tried first so the (large) recognition model is normally
    never parsed.
    """
    pack_dir = settings.pack_dir
    hint = (
        f"Hint: unzip the InsightFace pack '{settings.pack}' so that {pack_dir} holds its "
        "ONNX files (for buffalo_l: det_10g.onnx is the detector), or point at it with "
        "DetectorSettings(root=DIR, pack=NAME) (CLI: --insightface-root DIR --pack NAME; DIR "
        "is the folder holding models/)."
    )
    if not pack_dir.is_dir():
        raise ModelNotFoundError(
            f"InsightFace pack '{settings.pack}' not found: {pack_dir} is not a folder.\n{hint}"
            f"\n{offline_route()}"
        )
    candidates = sorted(pack_dir.glob("*.onnx"), key=lambda p: (not p.name.startswith("det"), p))
    nested = sorted({p.parent for p in pack_dir.glob("*/*.onnx")})
    if not candidates and nested:
        # A zip unpacked one level too deep: buffalo_l/buffalo_l/det_10g.onnx.
        raise ModelNotFoundError(
            f"InsightFace pack folder {pack_dir} has no .onnx files, but {nested[0]} has: "
            "the pack was unzipped one level too deep.\nHint: move the files of "
            f"{nested[0]} up into {pack_dir}."
        )
    for candidate in candidates:
        if _output_count(candidate) >= DETECTOR_MIN_OUTPUTS:
            return candidate
    found = ", ".join(p.name for p in candidates) or "no .onnx files"
    raise ModelNotFoundError(
        f"InsightFace pack folder {pack_dir} has no face detector (a model with "
        f">= {DETECTOR_MIN_OUTPUTS} outputs); found: {found}.\n{hint}"
    )


class FaceDetector:
    """Batched SCRFD detection through InsightFace's model zoo."""

    def __init__(self, settings: DetectorSettings, *, device: str = "cpu") -> None:
        from insightface.model_zoo import get_model

        self.settings = settings
        self.model_file = find_detector_file(settings)
        try:
            model = get_model(str(self.model_file), providers=onnx_providers(device))
        except Exception as exc:
            raise ModelLoadError(
                f"InsightFace could not load the detector {self.model_file}: {exc}"
            ) from exc
        if getattr(model, "taskname", None) != "detection":
            raise ModelLoadError(f"{self.model_file} is not a face detector for InsightFace")
        size = (settings.det_size, settings.det_size)
        ctx_id = 0 if device.startswith("cuda") else -1
        model.prepare(ctx_id, det_thresh=settings.det_thresh, input_size=size)
        if not model.use_kps:
            raise ModelLoadError(
                f"{self.model_file} detects faces without keypoints; featstore needs the five "
                "landmarks. Hint: use a pack whose detector predicts keypoints (buffalo_l)."
            )
        self.model = model
        self.session = model.session
        self.providers: list[str] = list(self.session.get_providers())
        batch_dim = self.session.get_inputs()[0].shape[0]
        # A detector exported with a fixed batch of 1 (like buffalo_l's det_10g) is
        # run image by image; one with a symbolic batch dimension takes the batch whole.
        self.accepts_batches = not isinstance(batch_dim, int) or batch_dim != 1
        self._anchor_cache: dict[tuple[int, int], NDArray[np.float32]] = {}

    def detect(
        self, blobs: NDArray[np.float32], scales: NDArray[np.float64]
    ) -> list[Detection | None]:
        """Detect the best face in each letterboxed image.

        Args:
            blobs: `[N, 3, S, S]` detector inputs from `featstore.extraction.images.detector_blob`.
            scales: `[N]` letterbox scale of each image (resized / original).
        """
        if len(blobs) == 0:
            return []
        if self.accepts_batches:
            outputs = [self._split(out, len(blobs)) for out in self._run(blobs)]
            per_image = [[out[i] for out in outputs] for i in range(len(blobs))]
        else:
            per_image = [
                [self._squeeze(out) for out in self._run(blobs[i : i + 1])]
                for i in range(len(blobs))
            ]
        return [
            self._decode(outs, float(scale)) for outs, scale in zip(per_image, scales, strict=True)
        ]

    def _run(self, blob: NDArray[np.float32]) -> list[NDArray[np.float32]]:
        return self.session.run(self.model.output_names, {self.model.input_name: blob})

    def _split(self, output: NDArray[np.float32], n: int) -> list[NDArray[np.float32]]:
        if output.ndim == 3:  # [N, anchors, C]
            return list(output)
        return np.split(output, n, axis=0)  # [N * anchors, C], batch-major

    @staticmethod
    def _squeeze(output: NDArray[np.float32]) -> NDArray[np.float32]:
        return output[0] if output.ndim == 3 else output

    def _anchor_centers(self, size: int, stride: int) -> NDArray[np.float32]:
        key = (size, stride)
        if key not in self._anchor_cache:
            cells = size // stride
            grid = np.stack(list(np.mgrid[:cells, :cells][::-1]), axis=-1).astype(np.float32)
            centers = (grid * stride).reshape(-1, 2)
            anchors = self.model._num_anchors
            if anchors > 1:
                centers = np.stack([centers] * anchors, axis=1).reshape(-1, 2)
            self._anchor_cache[key] = centers
        return self._anchor_cache[key]

    def _decode(self, outs: list[NDArray[np.float32]], scale: float) -> Detection | None:
        """InsightFace's SCRFD.forward + detect for one image, keeping the first face."""
        from insightface.model_zoo.scrfd import distance2bbox, distance2kps

        model = self.model
        fmc = model.fmc
        threshold = self.settings.det_thresh
        scores_list, boxes_list, kps_list = [], [], []
        for idx, stride in enumerate(model._feat_stride_fpn):
            scores = outs[idx]
            centers = self._anchor_centers(self.settings.det_size, stride)
            keep = np.where(scores >= threshold)[0]
            # Decode only the anchors above threshold: same numbers, a fraction of the work.
            scores_list.append(scores[keep])
            boxes_list.append(distance2bbox(centers[keep], outs[idx + fmc][keep] * stride))
            kps = distance2kps(centers[keep], outs[idx + fmc * 2][keep] * stride)
            kps_list.append(kps.reshape(len(keep), 5, 2))
        scores = np.vstack(scores_list).ravel()
        if scores.size == 0:
            return None
        # SCRFD.detect sorts candidates by score (stable) and NMS always keeps the first,
        # so the face InsightFace returns first is the top-scoring candidate: no NMS needed.
        best = int(np.argsort(-scores, kind="stable")[0])
        box = np.vstack(boxes_list)[best] / scale
        return Detection(
            box=box.astype(np.float32),
            landmarks_2d=(np.vstack(kps_list)[best] / scale).astype(np.float32),
            score=float(np.float32(scores[best])),
        )
