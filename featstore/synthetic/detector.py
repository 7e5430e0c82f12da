"""A tiny but real SCRFD-compatible ONNX face detector for tests, demos and benchmarks.

Real InsightFace packs (``buffalo_l`` ...) cannot be downloaded in tests, so this module
builds an ONNX graph, by hand with :mod:`onnx.helper`, that InsightFace's own
:func:`insightface.model_zoo.get_model` routes to its ``SCRFD`` class and that SCRFD's
unmodified decoding (anchor centres, distance boxes, keypoints, NMS) turns into sensible
detections of the light elliptical "faces" drawn by :mod:`featstore.synthetic.images`.

How the graph works (all coordinates in stride-16 cells of the 640x640 letterboxed input):

1. ``AveragePool`` of the RGB blob to 16x16 cells (via an 8 -> 16 -> 32 pyramid), then a
   fixed 1x1 ``Conv`` giving grey level ``v``, red-minus-blue ``rb`` and
   green-minus-magenta ``gm`` per cell.
2. A soft mask ``B = clip((v - t) / w, 0, 1)``: only clearly light cells count, so dark
   noisy backgrounds, the letterbox padding and uniform mid-grey all give ``B == 0``.
3. Two separable box ``Conv`` passes (1xK then Kx1, ``K = 2R + 1``) accumulate, in a window
   around every cell, the mask's mass ``M``, first and second moments (``Mx, My, Mxx, Myy``)
   and the mask-weighted colour sums (``Srb, Sgm, Sgrey``).  The moments give the blob's centroid
   relative to the cell's anchor and, for a uniform ellipse, its semi-axes
   ``a = 2 sqrt(var_x)``, ``b = 2 sqrt(var_y)``.  Every anchor whose window holds the whole
   blob therefore predicts the *same* box, so InsightFace's NMS keeps exactly one.
4. The score logit rewards mass (``sqrt(M / pi)``, i.e. size times brightness) and
   compactness (``rho = M / (pi a b)``: one filled ellipse, not two far-apart blobs seen
   through one window), and penalises the anchor's distance from the centroid and
   estimated ellipses that fill most of the window (a uniformly light image is no face).
5. Keypoints are a face-like template (eyes, nose, mouth corners) scaled by ``a, b``,
   shifted horizontally by a "yaw" read from the blob's red/blue balance and vertically by
   a "pitch" from its green/magenta balance, so differently tinted frames of the same
   synthetic person get different landmarks relative to their box.

Only stride 16 is active; strides 8 and 32 emit constant near-zero scores (shape-correct,
computed from the input so that they follow its dynamic size).  Distances are in stride
units, as InsightFace multiplies them by the stride.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from featstore.extraction.stand_in import mark_onnx
from featstore.synthetic.recognition import RECOGNITION_FILENAME, build_recognition_model

__all__ = [
    "ACTIVE_STRIDE",
    "DETECTOR_FILENAME",
    "NEUTRAL_TINT",
    "STRIDES",
    "build_detector_model",
    "write_synthetic_insightface_pack",
]

#: File name InsightFace's ``buffalo_l`` pack uses for its SCRFD detector.
DETECTOR_FILENAME = "det_10g.onnx"
#: SCRFD's feature strides, in InsightFace's output order.
STRIDES = (8, 16, 32)
#: The only stride whose scores can exceed the threshold.
ACTIVE_STRIDE = 16
#: Per-channel (R, G, B) colour balance the detector reads as a frontal pose (yaw = pitch
#: = 0); :func:`featstore.synthetic.images.draw_face` uses it as its default skin tint.
NEUTRAL_TINT = (1.0, 0.92, 0.85)

# ONNX opset / IR version: opset 17 with IR 8 loads in every onnxruntime >= 1.13 and keeps
# Clip/Split/ReduceMean in their "inputs, not attributes" form.
_OPSET = 17
_IR_VERSION = 8

_NUM_ANCHORS = 2
# Window half-width in cells.  With stride 16 on a 640 letterbox of a 320x240 image one
# cell is 8 source pixels, so the window sees +-88 px: enough for faces up to ~130 px wide,
# while a second face whose centre is >~130 px away does not disturb the moments.
_WINDOW_RADIUS = 11
# Mask: grey level (blob units, (pixel - 127.5) / 128) where "light" starts and its ramp.
# 0.15 ~ pixel 147 (so mid-grey 128 is dark) and saturation at 0.75 ~ pixel 223.
_MASK_START = 0.15
_MASK_RAMP = 0.6
# Score logit = _W_SIZE * (min(sqrt(M/pi), _R_CAP) - _R0) + _W_RHO * (rho - _RHO0)
#               - _W_DIST * d^2 - _W_FILL * relu(fill - _FILL0).
# The size term is capped near the largest face the window can measure so that large light
# areas (a white wall, an over-exposed frame) cannot outweigh the fill penalty.
_W_SIZE = 1.5
_R0 = 2.5
_R_CAP = 8.0
_W_RHO = 6.0
_RHO0 = 0.45
_W_DIST = 1.0
_W_FILL = 40.0
_FILL0 = 0.5
# The second anchor of a cell predicts the same box with a lower score (NMS drops it);
# the offset keeps the ranking deterministic.
_ANCHOR1_LOGIT_OFFSET = -1.0
# Inactive strides: sigmoid(-30) ~ 1e-13, never above any sane threshold.
_INACTIVE_LOGIT = -30.0
# Colour balance -> pose: chroma normalised by grey level (so brightness does not matter),
# relative to NEUTRAL_TINT's, times a gain; then clipped to [-1, 1].
_YAW_REF = (NEUTRAL_TINT[0] - NEUTRAL_TINT[2]) / (sum(NEUTRAL_TINT) / 3)
_PITCH_REF = (NEUTRAL_TINT[1] - (NEUTRAL_TINT[0] + NEUTRAL_TINT[2]) / 2) / (sum(NEUTRAL_TINT) / 3)
_YAW_GAIN = 2.5
_PITCH_GAIN = 4.0
# Keypoint template (fractions of the semi-axes) and how far the pose moves each point.
# left eye, right eye, nose, left mouth corner, right mouth corner
_KPS_BASE_X = (-0.38, 0.38, 0.0, -0.30, 0.30)
_KPS_BASE_Y = (-0.22, -0.22, 0.10, 0.45, 0.45)
_KPS_YAW_X = (0.22, 0.22, 0.40, 0.18, 0.18)
_KPS_PITCH_Y = (0.15, 0.15, 0.22, 0.10, 0.10)


class _GraphBuilder:
    """Small helper that names nodes/initialisers uniquely while the graph is assembled."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._counter = 0

    def _name(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}_{self._counter}"

    def const(
        self,
        value: np.ndarray | float | list[int] | list[float],
        *,
        dtype: type[np.generic] | None = None,
    ) -> str:
        """Add an initialiser and return its name (floats default to float32)."""
        array = np.asarray(value, dtype=dtype if dtype is not None else np.float32)
        name = self._name("c")
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: list[str], *, out: str | None = None, **attrs: Any) -> str:
        """Append a single-output node and return its output name."""
        output = out if out is not None else self._name(op_type.lower())
        self.nodes.append(
            helper.make_node(op_type, inputs, [output], name=self._name(op_type), **attrs)
        )
        return output

    def split(self, x: str, sizes: list[int]) -> list[str]:
        """Split ``x`` along the channel axis into pieces of ``sizes`` channels."""
        outputs = [self._name("split") for _ in sizes]
        self.nodes.append(
            helper.make_node(
                "Split",
                [x, self.const(sizes, dtype=np.int64)],
                outputs,
                name=self._name("Split"),
                axis=1,
            )
        )
        return outputs

    def scalar_op(self, op_type: str, x: str, value: float) -> str:
        """Element-wise op with a scalar float constant as second operand."""
        return self.op(op_type, [x, self.const(value)])


def _window_kernels(radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights of the two separable window convolutions.

    Pass 1 (1xK, horizontal) maps ``[B, B*rb, B*gm, B*grey]`` to
    ``[S0, Sx, Sxx, Srb0, Sgm0, Sgrey0]`` (row sums of 1, k, k^2 and the colour terms);
    pass 2 (Kx1, vertical) maps those to ``[M, Mx, Mxx, My, Myy, Srb, Sgm, Sgrey]``.
    Conv is a cross-correlation, so tap ``j`` multiplies the cell at offset ``k = j - R``.
    """
    k = np.arange(-radius, radius + 1, dtype=np.float32)
    ones = np.ones_like(k)
    size = k.size
    horizontal = np.zeros((6, 4, 1, size), dtype=np.float32)
    horizontal[0, 0, 0] = ones
    horizontal[1, 0, 0] = k
    horizontal[2, 0, 0] = k * k
    horizontal[3, 1, 0] = ones
    horizontal[4, 2, 0] = ones
    horizontal[5, 3, 0] = ones
    vertical = np.zeros((8, 6, size, 1), dtype=np.float32)
    vertical[0, 0, :, 0] = ones  # M
    vertical[1, 1, :, 0] = ones  # Mx
    vertical[2, 2, :, 0] = ones  # Mxx
    vertical[3, 0, :, 0] = k  # My
    vertical[4, 0, :, 0] = k * k  # Myy
    vertical[5, 3, :, 0] = ones  # Srb
    vertical[6, 4, :, 0] = ones  # Sgm
    vertical[7, 5, :, 0] = ones  # Sgrey
    return horizontal, vertical


def _to_anchor_rows(
    g: _GraphBuilder, per_anchor: list[str], channels: int, *, batched: bool, out: str
) -> None:
    """Lay out ``[N, C, h, w]`` maps (one per anchor) as SCRFD's ``[N, h*w*A, C]`` rows.

    Cells are row-major and the anchors of one cell consecutive, which is what
    InsightFace's anchor-centre grid (``np.mgrid`` then ``np.stack([...] * A, axis=1)``)
    assumes.  The non-batched layout drops the batch axis like the real ``det_10g.onnx``.
    """
    rows = []
    for feature in per_anchor:
        flat = g.op("Reshape", [feature, g.const([0, channels, -1], dtype=np.int64)])
        rows.append(g.op("Transpose", [flat], perm=[0, 2, 1]))  # [N, h*w, C]
    joined = g.op("Concat", rows, axis=2) if len(rows) > 1 else rows[0]  # [N, h*w, A*C]
    shape = [0, -1, channels] if batched else [-1, channels]
    g.op("Reshape", [joined, g.const(shape, dtype=np.int64)], out=out)


STAND_IN_DETECTOR = (
    "synthetic face detector of featstore.synthetic (a bright blob is a face): "
    "its boxes, keypoints and scores are not real detections"
)


def build_detector_model(*, batched: bool = True) -> onnx.ModelProto:
    """Build the synthetic SCRFD detector (see the module docstring for the design).

    Args:
        batched: ``True`` gives input ``[batch, 3, height, width]`` and 3-D outputs
            ``[batch, h*w*2, C]`` (InsightFace's ``batched`` path); ``False`` gives input
            ``[1, 3, ?, ?]`` and 2-D outputs ``[h*w*2, C]`` like buffalo_l's det_10g.onnx.

    Returns:
        A checked ``onnx.ModelProto`` with input ``input.1`` and 9 outputs: scores for
        strides 8/16/32, box distances for 8/16/32, keypoint offsets for 8/16/32.
        Any height / width works (pools floor like InsightFace's ``H // stride`` grid).

    Limits: faces are measured in a window of +-11 cells of 16 px, so on the 640x640
    letterbox a face's semi-axes should stay below ~140 px (about 45% of the letterboxed
    side) and two faces need centres ~180 px + the other's semi-axis apart.  Faces with a
    semi-axis under ~40 px there (20 px on a 320x240 image) or darker than grey ~170 are
    not reliably detected at det_thresh 0.5.
    """
    g = _GraphBuilder()
    x = "input.1"
    s = ACTIVE_STRIDE
    radius = _WINDOW_RADIUS
    size = 2 * radius + 1

    # 1. Per-cell colour statistics.  The blob is RGB (InsightFace uses swapRB=True).
    # One pyramid of average pools: only the first level reads the full-size input, the
    # coarser ones pool the previous level 2x2 (same averages, a fraction of the reads);
    # floor(floor(H / 8) / 2) == H // 16, matching InsightFace's grid for any H.
    pools: dict[int, str] = {}
    previous, previous_stride = x, 1
    for stride in STRIDES:
        factor = stride // previous_stride
        previous = g.op(
            "AveragePool", [previous], kernel_shape=[factor, factor], strides=[factor, factor]
        )
        pools[stride], previous_stride = previous, stride
    pooled = pools[s]
    colour_w = np.array(
        [[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, -1.0], [-0.5, 1.0, -0.5]], dtype=np.float32
    ).reshape(3, 3, 1, 1)
    stats = g.op("Conv", [pooled, g.const(colour_w)])
    v, rb, gm = g.split(stats, [1, 1, 1])

    # 2. Soft "light" mask; exactly 0 on dark or mid-grey cells, so they add no mass.
    mask = g.op(
        "Clip",
        [
            g.scalar_op("Mul", g.scalar_op("Sub", v, _MASK_START), 1.0 / _MASK_RAMP),
            g.const(0.0),
            g.const(1.0),
        ],
    )
    # grey = v + 1 ~ pixel grey / 128: normalises the colour terms so pose ignores brightness.
    grey = g.scalar_op("Add", v, 1.0)
    weighted = g.op(
        "Concat",
        [mask, g.op("Mul", [mask, rb]), g.op("Mul", [mask, gm]), g.op("Mul", [mask, grey])],
        axis=1,
    )

    # 3. Window moments through two separable convolutions (cheap: 2*K taps per cell).
    k_h, k_v = _window_kernels(radius)
    rows = g.op("Conv", [weighted, g.const(k_h)], pads=[0, radius, 0, radius])
    moments = g.op("Conv", [rows, g.const(k_v)], pads=[radius, 0, radius, 0])
    m, mx, mxx, my, myy, srb, sgm, sgrey = g.split(moments, [1] * 8)
    m_safe = g.scalar_op("Add", m, 1e-4)  # avoids 0/0 where the window is empty
    cx = g.op("Div", [mx, m_safe])
    cy = g.op("Div", [my, m_safe])
    # var = E[k^2] - E[k]^2, floored at 1/12 (the variance of one cell) so that empty or
    # single-cell windows still give finite, positive semi-axes.
    var_x = g.op(
        "Max", [g.op("Sub", [g.op("Div", [mxx, m_safe]), g.op("Mul", [cx, cx])]), g.const(1 / 12)]
    )
    var_y = g.op(
        "Max", [g.op("Sub", [g.op("Div", [myy, m_safe]), g.op("Mul", [cy, cy])]), g.const(1 / 12)]
    )
    semi_a = g.scalar_op("Mul", g.op("Sqrt", [var_x]), 2.0)  # uniform ellipse: var = a^2/4
    semi_b = g.scalar_op("Mul", g.op("Sqrt", [var_y]), 2.0)
    # Pooled cell j covers pixels [j*s, j*s + s - 1], its centre lies (s-1)/2 px right of/
    # below InsightFace's anchor point j*s: shift the centroid into anchor coordinates.
    half_cell = (s - 1) / (2 * s)
    dx = g.scalar_op("Add", cx, half_cell)
    dy = g.scalar_op("Add", cy, half_cell)

    # 4. Score.
    area = g.scalar_op("Mul", g.op("Mul", [semi_a, semi_b]), float(np.pi))
    rho = g.op("Div", [m, area])
    mass_radius = g.scalar_op(
        "Min", g.op("Sqrt", [g.scalar_op("Mul", m, float(1 / np.pi))]), _R_CAP
    )
    # Geometric fill: the estimated ellipse's share of the window.  A face leaves a dark
    # margin around it; a uniformly light field (of any brightness) fills the window.
    fill = g.scalar_op("Mul", area, 1.0 / (size * size))
    dist2 = g.op("Add", [g.op("Mul", [dx, dx]), g.op("Mul", [dy, dy])])
    logit = g.op(
        "Sum",
        [
            g.scalar_op("Mul", g.scalar_op("Sub", mass_radius, _R0), _W_SIZE),
            g.scalar_op("Mul", g.scalar_op("Sub", rho, _RHO0), _W_RHO),
            g.scalar_op("Mul", dist2, -_W_DIST),
            g.scalar_op("Mul", g.op("Relu", [g.scalar_op("Sub", fill, _FILL0)]), -_W_FILL),
        ],
    )
    score0 = g.op("Sigmoid", [logit])
    score1 = g.op("Sigmoid", [g.scalar_op("Add", logit, _ANCHOR1_LOGIT_OFFSET)])

    # Box distances (left, top, right, bottom) from the anchor, in stride units.
    box = g.op(
        "Concat",
        [
            g.op("Sub", [semi_a, dx]),
            g.op("Sub", [semi_b, dy]),
            g.op("Add", [semi_a, dx]),
            g.op("Add", [semi_b, dy]),
        ],
        axis=1,
    )

    # 5. Keypoints: template + pose read from the blob's colour balance.
    # Pose = gain * (mask-weighted chroma / grey - neutral chroma), clipped to [-1, 1].
    grey_safe = g.scalar_op("Add", sgrey, 1e-4)
    yaw = g.op(
        "Clip",
        [
            g.scalar_op(
                "Mul", g.scalar_op("Sub", g.op("Div", [srb, grey_safe]), _YAW_REF), _YAW_GAIN
            ),
            g.const(-1.0),
            g.const(1.0),
        ],
    )
    pitch = g.op(
        "Clip",
        [
            g.scalar_op(
                "Mul", g.scalar_op("Sub", g.op("Div", [sgm, grey_safe]), _PITCH_REF), _PITCH_GAIN
            ),
            g.const(-1.0),
            g.const(1.0),
        ],
    )

    def template(
        base: tuple[float, ...], pose_gain: tuple[float, ...], pose: str, centre: str, semi: str
    ) -> str:
        # centre + semi * (base + gain * pose), broadcast over the 5 points -> [N, 5, h, w]
        shape = (1, 5, 1, 1)
        frac = g.op(
            "Add",
            [
                g.const(np.array(base, np.float32).reshape(shape)),
                g.op("Mul", [pose, g.const(np.array(pose_gain, np.float32).reshape(shape))]),
            ],
        )
        return g.op("Add", [centre, g.op("Mul", [semi, frac])])

    kps_x = template(_KPS_BASE_X, _KPS_YAW_X, yaw, dx, semi_a)
    kps_y = template(_KPS_BASE_Y, _KPS_PITCH_Y, pitch, dy, semi_b)
    # Interleave to x0, y0, x1, y1, ...: [N, 5, 2, h, w] -> [N, 10, h*w].
    kps = g.op(
        "Concat",
        [
            g.op("Unsqueeze", [kps_x, g.const([2], dtype=np.int64)]),
            g.op("Unsqueeze", [kps_y, g.const([2], dtype=np.int64)]),
        ],
        axis=2,
    )
    kps = g.op("Reshape", [kps, g.const([0, 10, -1], dtype=np.int64)])

    # Inactive strides: a zero-weight 1x1 Conv of a pooled grey map yields constant maps of
    # the right spatial size (score logit, unit box, zero keypoints) for any input size.
    inactive_bias = np.zeros(15, dtype=np.float32)
    inactive_bias[0] = _INACTIVE_LOGIT
    inactive_bias[1:5] = 1.0
    inactive: dict[int, tuple[str, str, str]] = {}
    for stride in STRIDES:
        if stride == ACTIVE_STRIDE:
            continue
        const_maps = g.op(
            "Conv",
            [pools[stride], g.const(np.zeros((15, 3, 1, 1), np.float32)), g.const(inactive_bias)],
        )
        sc, bx, kp = g.split(const_maps, [1, 4, 10])
        inactive[stride] = (g.op("Sigmoid", [sc]), bx, kp)

    # Output layout.
    out_names = {
        kind: [f"{kind}_{stride}" for stride in STRIDES] for kind in ("score", "bbox", "kps")
    }
    channels = {"score": 1, "bbox": 4, "kps": 10}
    for i, stride in enumerate(STRIDES):
        if stride == ACTIVE_STRIDE:
            _to_anchor_rows(g, [score0, score1], 1, batched=batched, out=out_names["score"][i])
            _to_anchor_rows(g, [box, box], 4, batched=batched, out=out_names["bbox"][i])
            _to_anchor_rows(g, [kps, kps], 10, batched=batched, out=out_names["kps"][i])
        else:
            sc, bx, kp = inactive[stride]
            _to_anchor_rows(g, [sc, sc], 1, batched=batched, out=out_names["score"][i])
            _to_anchor_rows(g, [bx, bx], 4, batched=batched, out=out_names["bbox"][i])
            _to_anchor_rows(g, [kp, kp], 10, batched=batched, out=out_names["kps"][i])

    if batched:
        input_shape: list[int | str] = ["batch", 3, "height", "width"]
    else:
        # Like buffalo_l's det_10g.onnx: fixed batch of one, one shared symbol for H and W.
        input_shape = [1, 3, "?", "?"]
    inputs = [helper.make_tensor_value_info(x, TensorProto.FLOAT, input_shape)]
    outputs = []
    for kind in ("score", "bbox", "kps"):
        for stride, name in zip(STRIDES, out_names[kind], strict=True):
            rows_dim = f"anchors_{stride}"
            shape: list[int | str] = (
                ["batch", rows_dim, channels[kind]] if batched else [rows_dim, channels[kind]]
            )
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))

    graph = helper.make_graph(
        g.nodes, "featstore_synthetic_scrfd", inputs, outputs, initializer=g.initializers
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", _OPSET)],
        producer_name="featstore.synthetic",
        doc_string="Synthetic SCRFD-compatible detector for tests; not a real face model.",
    )
    model.ir_version = _IR_VERSION
    mark_onnx(model, STAND_IN_DETECTOR)
    onnx.checker.check_model(model, full_check=True)
    return model


def write_synthetic_insightface_pack(
    root: Path,
    pack: str = "buffalo_l",
    *,
    batched: bool = True,
    with_recognition: bool = False,
    recognition_batched: bool = True,
) -> Path:
    """Write a pack in InsightFace's layout: ``<root>/models/<pack>/det_10g.onnx``.

    Args:
        root: InsightFace root (what ``FaceAnalysis(root=...)`` / ``get_model(root=...)``
            expect; the pack folder goes under ``models/``).
        pack: Pack folder name.
        batched: Which detector layout to write (see :func:`build_detector_model`).
        with_recognition: Also write the ArcFace-shaped ``w600k_r50.onnx``
            (:mod:`featstore.synthetic.recognition`).
        recognition_batched: Its batch dimension: dynamic, or fixed to 1.

    Returns:
        The pack folder ``<root>/models/<pack>``.
    """
    pack_dir = Path(root) / "models" / pack
    pack_dir.mkdir(parents=True, exist_ok=True)
    onnx.save_model(build_detector_model(batched=batched), pack_dir / DETECTOR_FILENAME)
    if with_recognition:
        model = build_recognition_model(batched=recognition_batched)
        onnx.save_model(model, pack_dir / RECOGNITION_FILENAME)
    return pack_dir
