"""A tiny but real ArcFace-shaped ONNX recognition model for tests, demos and benchmarks.

InsightFace's `model_zoo` routes a single-output model with a square input of 112 or more
(a multiple of 16) to `ArcFaceONNX`; this one takes `[N, 3, 112, 112]` and gives `[N, 512]`.
Its embedding depends on the aligned crop's content: the crop is average-pooled to 14x14
cells per channel, projected by a fixed random matrix, squashed with `tanh` and projected
again, so two crops are as similar as their coarse layout and colours (a stand-in for
identity, with no claim to recognise anybody). Node names avoid `Sub`/`Mul` prefixes so
`ArcFaceONNX` normalises the input as it does for `w600k_r50` ((x - 127.5) / 127.5).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from featstore.extraction.stand_in import mark_onnx

__all__ = ["RECOGNITION_DIM", "RECOGNITION_FILENAME", "build_recognition_model"]

#: File name of `buffalo_l`'s ArcFace recogniser.
RECOGNITION_FILENAME = "w600k_r50.onnx"
#: Embedding size (ArcFace's).
RECOGNITION_DIM = 512
_SIZE = 112
_CELL = 8  # 112 / 8 = 14 cells a side
_OPSET = 17
_IR_VERSION = 8


def build_recognition_model(*, batched: bool = True, seed: int = 0) -> onnx.ModelProto:
    """The recognition graph; `batched=False` fixes the batch to 1, as some exports do."""
    rng = np.random.default_rng(seed)
    cells = 3 * (_SIZE // _CELL) ** 2
    first = (rng.standard_normal((cells, RECOGNITION_DIM)) * (3.0 / np.sqrt(cells))).astype(
        np.float32
    )
    second = (rng.standard_normal((RECOGNITION_DIM, RECOGNITION_DIM)) / np.sqrt(512)).astype(
        np.float32
    )
    nodes = [
        helper.make_node(
            "AveragePool",
            ["input.1"],
            ["pooled"],
            name="rec_pool",
            kernel_shape=[_CELL, _CELL],
            strides=[_CELL, _CELL],
        ),
        helper.make_node("Flatten", ["pooled"], ["cells"], name="rec_flatten", axis=1),
        helper.make_node("MatMul", ["cells", "w_first"], ["hidden"], name="rec_project"),
        helper.make_node("Tanh", ["hidden"], ["squashed"], name="rec_tanh"),
        helper.make_node("MatMul", ["squashed", "w_second"], ["embedding"], name="rec_embed"),
    ]
    batch: int | str = "batch" if batched else 1
    graph = helper.make_graph(
        nodes,
        "featstore_recognition",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [batch, 3, _SIZE, _SIZE])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, RECOGNITION_DIM])],
        initializer=[
            numpy_helper.from_array(first, "w_first"),
            numpy_helper.from_array(second, "w_second"),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", _OPSET)], producer_name="featstore.synthetic"
    )
    model.ir_version = _IR_VERSION
    mark_onnx(
        model,
        "synthetic recognition model of featstore.synthetic: its embeddings are not identities",
    )
    onnx.checker.check_model(model, full_check=True)
    return model
