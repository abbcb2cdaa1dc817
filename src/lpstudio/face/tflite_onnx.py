"""Convert a parsed TFLite image model to ONNX, written by hand, for ONNX Runtime.

ONNX Runtime (already a dependency of lpstudio) runs these small MobileNet-like
networks several times faster than eager PyTorch on a CPU, so the MediaPipe
face models are converted once, in memory, when they are loaded. The ONNX file
is serialised here with a minimal Protocol Buffers writer, so neither the
``onnx`` package nor a TFLite runtime is needed.

The graph is built NCHW: the NHWC input is transposed once at the start and 4-D
outputs are transposed back, so outputs have the TFLite shapes. The operator
set is :data:`lpstudio.face.tflite.OP_NAMES`; :class:`~lpstudio.face.tflite.TFLiteModel`
(the PyTorch interpreter) is the reference the conversion is tested against.

Facts from ``onnx/onnx.proto`` (field numbers): ``ModelProto`` 1 ir_version,
2 producer_name, 7 graph, 8 opset_import; ``OperatorSetIdProto`` 1 domain,
2 version; ``GraphProto`` 1 node, 2 name, 5 initializer, 11 input, 12 output;
``NodeProto`` 1 input, 2 output, 3 name, 4 op_type, 5 attribute;
``AttributeProto`` 1 name, 3 i, 4 s, 8 ints, 20 type (INT = 2, STRING = 3, INTS = 7);
``TensorProto`` 1 dims, 2 data_type (FLOAT = 1, INT64 = 7), 8 name, 9 raw_data;
``ValueInfoProto`` 1 name, 2 type; ``TypeProto`` 1 tensor_type;
``TypeProto.Tensor`` 1 elem_type, 2 shape; ``TensorShapeProto`` 1 dim;
``Dimension`` 1 dim_value.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .tflite import (
    ACT_NONE,
    ACT_RELU,
    ACT_RELU6,
    OP_ADD,
    OP_AVERAGE_POOL_2D,
    OP_CONCATENATION,
    OP_CONV_2D,
    OP_DEPTH_TO_SPACE,
    OP_DEPTHWISE_CONV_2D,
    OP_LOGISTIC,
    OP_MAX_POOL_2D,
    OP_PAD,
    OP_PRELU,
    OP_RELU,
    OP_RELU6,
    OP_RESHAPE,
    OP_RESIZE_BILINEAR,
    PADDING_SAME,
    TFLiteError,
    TFLiteModel,
    _same_padding,
)

#: ONNX IR version and default-domain opset of the written model (ONNX Runtime >= 1.14 reads both).
ONNX_IR_VERSION: int = 8
ONNX_OPSET: int = 17
_FLOAT, _INT64 = 1, 7
_ATTR_INT, _ATTR_STRING, _ATTR_INTS = 2, 3, 7
#: NHWC <-> NCHW permutations.
_TO_NCHW = (0, 3, 1, 2)
_TO_NHWC = (0, 2, 3, 1)
#: NHWC axis -> NCHW axis for 4-D tensors.
_AXIS_NHWC_TO_NCHW = {0: 0, 1: 2, 2: 3, 3: 1}


# --------------------------------------------------------------------------- protobuf writer


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 as two's complement, as protobuf does
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint((field << 3) | wire)


def _int(field: int, value: int) -> bytes:
    return _key(field, 0) + _varint(int(value))


def _bytes(field: int, value: bytes) -> bytes:
    return _key(field, 2) + _varint(len(value)) + value


def _str(field: int, value: str) -> bytes:
    return _bytes(field, value.encode("utf-8"))


def _attr_int(name: str, value: int) -> bytes:
    return _str(1, name) + _int(3, value) + _int(20, _ATTR_INT)


def _attr_ints(name: str, values: list[int] | tuple[int, ...]) -> bytes:
    return _str(1, name) + b"".join(_int(8, v) for v in values) + _int(20, _ATTR_INTS)


def _attr_str(name: str, value: str) -> bytes:
    return _str(1, name) + _str(4, value) + _int(20, _ATTR_STRING)


def _attr(name: str, value: object) -> bytes:
    if isinstance(value, str):
        return _attr_str(name, value)
    if isinstance(value, (list, tuple)):
        return _attr_ints(name, value)
    return _attr_int(name, int(value))  # type: ignore[call-overload]


def _tensor(name: str, array: NDArray) -> bytes:
    if array.dtype == np.float32:
        dtype = _FLOAT
    elif array.dtype == np.int64:
        dtype = _INT64
    else:
        raise TFLiteError(f"ONNX writer: unsupported constant dtype {array.dtype}")
    arr = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False)
    dims = b"".join(_int(1, d) for d in arr.shape)
    return dims + _int(2, dtype) + _str(8, name) + _bytes(9, arr.tobytes())


def _value_info(name: str, shape: tuple[int, ...]) -> bytes:
    dims = b"".join(_bytes(1, _int(1, d)) for d in shape)
    tensor_type = _int(1, _FLOAT) + _bytes(2, dims)
    return _str(1, name) + _bytes(2, _bytes(1, tensor_type))


class _GraphBuilder:
    def __init__(self) -> None:
        self.nodes: list[bytes] = []
        self.initializers: list[bytes] = []
        self._count = 0

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}__{self._count}"

    def const(self, array: NDArray, hint: str = "const") -> str:
        name = self.fresh(hint)
        self.initializers.append(_tensor(name, array))
        return name

    def node(self, op_type: str, inputs: list[str], outputs: list[str] | None = None, **attrs: object) -> str:
        outs = outputs or [self.fresh(op_type.lower())]
        body = b"".join(_str(1, i) for i in inputs) + b"".join(_str(2, o) for o in outs)
        body += _str(3, self.fresh("node")) + _str(4, op_type)
        for k, v in attrs.items():
            body += _bytes(5, _attr(k, v))
        self.nodes.append(body)
        return outs[0]


# --------------------------------------------------------------------------- conversion


def tflite_to_onnx(model: TFLiteModel) -> bytes:
    """Serialise a loaded TFLite model as an ONNX ``ModelProto``.

    Args:
        model: a :class:`~lpstudio.face.tflite.TFLiteModel` (its operators were
            checked when it was loaded).

    Returns:
        The ONNX file's bytes; inputs and outputs keep the TFLite names and shapes.
    """
    g = model.graph
    b = _GraphBuilder()
    names: dict[int, str] = {}
    const_cache: dict[int, str] = {}

    def value(index: int) -> str:
        if index in names:
            return names[index]
        if index not in const_cache:
            arr = np.asarray(g.constants[index], dtype=np.float32)
            const_cache[index] = b.const(np.ascontiguousarray(arr.transpose(_TO_NCHW) if arr.ndim == 4 else arr))
        return const_cache[index]

    def activation(x: str, act: int) -> str:
        if act == ACT_NONE:
            return x
        if act == ACT_RELU:
            return b.node("Relu", [x])
        if act == ACT_RELU6:
            return b.node("Clip", [x, b.const(np.array(0.0, np.float32)), b.const(np.array(6.0, np.float32))])
        raise TFLiteError(f"{model.name}: fused activation {act} is not supported")

    inputs = []
    for t in g.inputs:
        inputs.append(_value_info(g.names[t], g.shapes[t]))
        names[t] = b.node("Transpose", [g.names[t]], perm=list(_TO_NCHW)) if len(g.shapes[t]) == 4 else g.names[t]

    for op, prep in model._steps:
        if prep.get("skip"):
            continue
        code, out = op.code, op.outputs[0]
        x = value(op.inputs[0])
        in_shape = g.shapes[op.inputs[0]]
        if code in (OP_CONV_2D, OP_DEPTHWISE_CONV_2D):
            w = prep["w"].numpy()
            pads = [0, 0, 0, 0]
            if prep["padding"] == PADDING_SAME:
                ph = _same_padding(in_shape[1], w.shape[2], prep["stride"][0], prep["dilation"][0])
                pw = _same_padding(in_shape[2], w.shape[3], prep["stride"][1], prep["dilation"][1])
                pads = [ph[0], pw[0], ph[1], pw[1]]
            ins = [x, b.const(np.ascontiguousarray(w, dtype=np.float32), "w")]
            if prep["b"] is not None:
                ins.append(b.const(prep["b"].numpy().astype(np.float32), "b"))
            y = b.node(
                "Conv",
                ins,
                kernel_shape=list(w.shape[2:]),
                strides=list(prep["stride"]),
                dilations=list(prep["dilation"]),
                pads=pads,
                group=prep["groups"],
            )
            names[out] = activation(y, prep["act"])
        elif code in (OP_MAX_POOL_2D, OP_AVERAGE_POOL_2D):
            k, s = prep["kernel"], prep["stride"]
            pads = [0, 0, 0, 0]
            if prep["padding"] == PADDING_SAME:
                ph, pw = _same_padding(in_shape[1], k[0], s[0]), _same_padding(in_shape[2], k[1], s[1])
                pads = [ph[0], pw[0], ph[1], pw[1]]
                if code == OP_AVERAGE_POOL_2D and any(pads):
                    raise TFLiteError(f"{prep['what']}: SAME-padded average pooling is not supported")
            pool = "MaxPool" if code == OP_MAX_POOL_2D else "AveragePool"
            y = b.node(pool, [x], kernel_shape=list(k), strides=list(s), pads=pads)
            names[out] = activation(y, prep["act"])
        elif code == OP_ADD:
            names[out] = activation(b.node("Add", [x, value(op.inputs[1])]), prep["act"])
        elif code == OP_RELU:
            names[out] = b.node("Relu", [x])
        elif code == OP_RELU6:
            names[out] = activation(x, ACT_RELU6)
        elif code == OP_LOGISTIC:
            names[out] = b.node("Sigmoid", [x])
        elif code == OP_PRELU:
            alpha = prep["alpha"].numpy().astype(np.float32)
            slope = alpha.reshape(-1, 1, 1) if len(in_shape) == 4 else alpha
            names[out] = b.node("PRelu", [x, b.const(slope, "alpha")])
        elif code == OP_PAD:
            pads = prep["pads"]
            if len(in_shape) == 4:
                pads = pads[list(_TO_NCHW)]
            onnx_pads = np.concatenate([pads[:, 0], pads[:, 1]]).astype(np.int64)
            names[out] = b.node("Pad", [x, b.const(onnx_pads, "pads")])
        elif code == OP_RESHAPE:
            src = b.node("Transpose", [x], perm=list(_TO_NHWC)) if len(in_shape) == 4 else x
            shape = prep["shape"]
            y = b.node("Reshape", [src, b.const(np.asarray(shape, dtype=np.int64), "shape")])
            names[out] = b.node("Transpose", [y], perm=list(_TO_NCHW)) if len(shape) == 4 else y
        elif code == OP_RESIZE_BILINEAR:
            h, w = prep["size"]
            sizes = b.const(np.array([in_shape[0], in_shape[3], h, w], dtype=np.int64), "sizes")
            mode = "align_corners" if prep["align_corners"] else "half_pixel"
            names[out] = b.node("Resize", [x, "", "", sizes], mode="linear", coordinate_transformation_mode=mode)
        elif code == OP_DEPTH_TO_SPACE:  # TensorFlow's order is ONNX's DCR mode
            names[out] = b.node("DepthToSpace", [x], blocksize=prep["block"], mode="DCR")
        elif code == OP_CONCATENATION:
            nd = len(in_shape)
            axis = prep["axis"] % nd
            axis = _AXIS_NHWC_TO_NCHW[axis] if nd == 4 else axis
            names[out] = activation(b.node("Concat", [value(i) for i in op.inputs], axis=axis), prep["act"])
        else:  # pragma: no cover - TFLiteModel refuses these when loading
            raise TFLiteError(f"{model.name}: operator {code} cannot be converted")

    outputs = []
    for t in g.outputs:
        shape = g.shapes[t]
        src = value(t)
        name = g.names[t]
        if len(shape) == 4:
            b.node("Transpose", [src], [name], perm=list(_TO_NHWC))
        else:
            b.node("Identity", [src], [name])
        outputs.append(_value_info(name, shape))

    graph = b"".join(_bytes(1, n) for n in b.nodes) + _str(2, model.name.replace("/", "_"))
    graph += b"".join(_bytes(5, t) for t in b.initializers)
    graph += b"".join(_bytes(11, v) for v in inputs) + b"".join(_bytes(12, v) for v in outputs)
    opset = _str(1, "") + _int(2, ONNX_OPSET)
    return _int(1, ONNX_IR_VERSION) + _str(2, "lpstudio") + _bytes(7, graph) + _bytes(8, opset)
