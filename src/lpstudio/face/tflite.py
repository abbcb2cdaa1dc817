"""Run small TensorFlow Lite image models with PyTorch: a reader and an interpreter.

MediaPipe's legacy face models ship as ``.tflite`` files (FlatBuffers in the
TFLite schema). Rather than adding a TFLite runtime (or the whole
``mediapipe`` dependency set) this module reads the file itself and runs its
operator list with ``torch.nn.functional``, which lpstudio depends on anyway.

Only what those models use is supported, and everything else is refused with a
clear error naming the operator: ``ADD``, ``CONCATENATION``, ``CONV_2D``,
``DEPTHWISE_CONV_2D``, ``DEQUANTIZE`` (float16 constants), ``DENSIFY`` (sparse
constants, expanded when read: :mod:`.tflite_sparse`), ``MAX_POOL_2D``,
``AVERAGE_POOL_2D``, ``PAD``, ``RELU``, ``RELU6``, ``LOGISTIC``, ``PRELU``,
``RESHAPE``, ``RESIZE_BILINEAR`` (half-pixel centres or aligned corners) and
``DEPTH_TO_SPACE``, on float32 tensors with fused activations ``NONE``/``RELU``/``RELU6``.

Facts from the TFLite schema (``tensorflow/lite/schema/schema.fbs``; field
numbers as in the generated ``schema_py_generated.py``):

* the file starts with the root table offset, then the identifier ``TFL3``;
* ``Model``: 1 operator_codes, 2 subgraphs, 4 buffers; ``SubGraph``: 0 tensors,
  1 inputs, 2 outputs, 3 operators; ``Tensor``: 0 shape, 1 type, 2 buffer,
  3 name; ``Operator``: 0 opcode_index, 1 inputs, 2 outputs, 4 builtin_options;
  ``OperatorCode``: 0 deprecated_builtin_code (byte), 3 builtin_code (int32);
  ``Buffer``: 0 data, 1 offset, 2 size (offset is from the file start);
* options: ``Conv2DOptions`` 0 padding, 1 stride_w, 2 stride_h, 3 activation,
  4 dilation_w, 5 dilation_h; ``DepthwiseConv2DOptions`` 0 padding, 1 stride_w,
  2 stride_h, 3 depth_multiplier, 4 activation, 5/6 dilation w/h;
  ``Pool2DOptions`` 0 padding, 1 stride_w, 2 stride_h, 3 filter_w, 4 filter_h,
  5 activation; ``ConcatenationOptions`` 0 axis, 1 activation;
  ``AddOptions`` 0 activation; ``ReshapeOptions`` 0 new_shape;
  ``ResizeBilinearOptions`` 2 align_corners, 3 half_pixel_centers (its size is
  the operator's second input); ``DepthToSpaceOptions`` 0 block_size (TensorFlow's
  order: output ``(h * b + i, w * b + j, c)`` reads input channel ``(i * b + j) * C + c``);
  ``Tensor`` 6 sparsity;
* tensors are NHWC; convolution filters ``(O, H, W, I)``, depthwise filters
  ``(1, H, W, C * multiplier)``; ``SAME`` padding puts the odd pixel after
  (bottom/right), as TensorFlow does.

Inside the interpreter 4-D activations are kept NCHW (the layout torch's
convolutions want); operators whose meaning depends on the layout (axis of a
concatenation, a reshape, a pad) translate from NHWC.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from .tflite_sparse import densify

#: The 4-byte file identifier of TFLite flatbuffers (bytes 4..8).
TFLITE_IDENTIFIER: bytes = b"TFL3"

# BuiltinOperator codes (schema.fbs).
OP_ADD, OP_AVERAGE_POOL_2D, OP_CONCATENATION, OP_CONV_2D, OP_DEPTHWISE_CONV_2D = 0, 1, 2, 3, 4
OP_DEQUANTIZE, OP_LOGISTIC, OP_MAX_POOL_2D, OP_RELU, OP_RELU6, OP_RESHAPE = 6, 14, 17, 19, 21, 22
OP_PAD, OP_PRELU = 34, 54
OP_DEPTH_TO_SPACE, OP_RESIZE_BILINEAR, OP_DENSIFY = 5, 23, 124
#: Codes above this live in ``builtin_code`` (int32) rather than the deprecated byte.
_PLACEHOLDER_FOR_GREATER_OP_CODES: int = 127
OP_NAMES: dict[int, str] = {
    OP_ADD: "ADD",
    OP_AVERAGE_POOL_2D: "AVERAGE_POOL_2D",
    OP_CONCATENATION: "CONCATENATION",
    OP_CONV_2D: "CONV_2D",
    OP_DEPTHWISE_CONV_2D: "DEPTHWISE_CONV_2D",
    OP_DEQUANTIZE: "DEQUANTIZE",
    OP_LOGISTIC: "LOGISTIC",
    OP_MAX_POOL_2D: "MAX_POOL_2D",
    OP_RELU: "RELU",
    OP_RELU6: "RELU6",
    OP_RESHAPE: "RESHAPE",
    OP_PAD: "PAD",
    OP_PRELU: "PRELU",
    OP_DEPTH_TO_SPACE: "DEPTH_TO_SPACE",
    OP_RESIZE_BILINEAR: "RESIZE_BILINEAR",
    OP_DENSIFY: "DENSIFY",
}

# TensorType codes -> numpy dtypes (only those a constant may have here).
_TENSOR_DTYPES: dict[int, Any] = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}
TYPE_FLOAT32: int = 0

PADDING_SAME, PADDING_VALID = 0, 1
ACT_NONE, ACT_RELU, ACT_RELU6 = 0, 1, 3


class TFLiteError(ValueError):
    """The file is not a TFLite model this interpreter can run."""


# --------------------------------------------------------------------------- flatbuffers


class _Table:
    """Read access to one FlatBuffers table (little-endian, as the format defines)."""

    __slots__ = ("buf", "pos", "vtable", "vt_size")

    def __init__(self, buf: memoryview, pos: int) -> None:
        self.buf = buf
        self.pos = pos
        self.vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vt_size = struct.unpack_from("<H", buf, self.vtable)[0]

    def _field(self, index: int) -> int:
        """Absolute position of field ``index``, or 0 when absent."""
        slot = 4 + 2 * index
        if slot >= self.vt_size:
            return 0
        off = struct.unpack_from("<H", self.buf, self.vtable + slot)[0]
        return self.pos + off if off else 0

    def scalar(self, index: int, fmt: str, default: int | float = 0) -> Any:
        p = self._field(index)
        return struct.unpack_from("<" + fmt, self.buf, p)[0] if p else default

    def _deref(self, p: int) -> int:
        return p + struct.unpack_from("<I", self.buf, p)[0]

    def table(self, index: int) -> _Table | None:
        p = self._field(index)
        return _Table(self.buf, self._deref(p)) if p else None

    def _vector(self, index: int) -> tuple[int, int]:
        """(start of elements, length) of a vector field; (0, 0) when absent."""
        p = self._field(index)
        if not p:
            return 0, 0
        v = self._deref(p)
        return v + 4, struct.unpack_from("<I", self.buf, v)[0]

    def tables(self, index: int) -> list[_Table]:
        start, n = self._vector(index)
        return [_Table(self.buf, self._deref(start + 4 * i)) for i in range(n)]

    def ints(self, index: int) -> list[int]:
        start, n = self._vector(index)
        return list(struct.unpack_from(f"<{n}i", self.buf, start)) if n else []

    def bytes_(self, index: int) -> memoryview:
        start, n = self._vector(index)
        return self.buf[start : start + n]

    def string(self, index: int) -> str:
        return bytes(self.bytes_(index)).decode("utf-8", errors="replace")


# --------------------------------------------------------------------------- model


@dataclass
class _Op:
    code: int
    inputs: list[int]
    outputs: list[int]
    options: _Table | None


@dataclass
class TFLiteGraph:
    """The parsed main subgraph of a TFLite model.

    Attributes:
        shapes: per tensor, its NHWC shape.
        names: per tensor, its name.
        constants: tensor index -> float32/int32 numpy array (weights, shapes, paddings).
        inputs, outputs: tensor indices of the graph's inputs and outputs.
        ops: the operators in execution order.
    """

    shapes: list[tuple[int, ...]]
    names: list[str]
    types: list[int]
    constants: dict[int, NDArray[Any]]
    inputs: list[int]
    outputs: list[int]
    ops: list[_Op] = field(default_factory=list)


def parse_tflite(data: bytes, name: str = "model") -> TFLiteGraph:
    """Parse a ``.tflite`` file's first subgraph.

    Raises:
        TFLiteError: not a TFLite file, damaged, or several subgraphs.
    """
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise TFLiteError(f"{name} is not a TensorFlow Lite model (no '{TFLITE_IDENTIFIER.decode()}' identifier)")
    buf = memoryview(data)
    try:
        model = _Table(buf, struct.unpack_from("<I", buf, 0)[0])
        codes = []
        for oc in model.tables(1):
            deprecated = oc.scalar(0, "b", 0)
            code = oc.scalar(3, "i", 0)
            codes.append(max(int(deprecated), int(code)) if deprecated != _PLACEHOLDER_FOR_GREATER_OP_CODES else code)
        buffers = model.tables(4)
        subgraphs = model.tables(2)
        if len(subgraphs) != 1:
            raise TFLiteError(f"{name} has {len(subgraphs)} subgraphs; only single-graph models are supported")
        sg = subgraphs[0]
        shapes, names, types, constants = [], [], [], {}
        for i, t in enumerate(sg.tables(0)):
            shape = tuple(t.ints(0))
            ttype = int(t.scalar(1, "b", 0))
            shapes.append(shape)
            names.append(t.string(3))
            types.append(ttype)
            b = int(t.scalar(2, "I", 0))
            raw = _buffer_bytes(buffers[b], buf) if 0 < b < len(buffers) else b""
            if raw:
                dtype = _TENSOR_DTYPES.get(ttype)
                if dtype is None:
                    raise TFLiteError(f"{name}: constant tensor '{names[-1]}' has unsupported type {ttype}")
                values = np.frombuffer(bytes(raw), dtype=dtype)
                sparsity = t.table(6)
                constants[i] = values.reshape(shape).copy() if sparsity is None else densify(values, shape, sparsity)
        ops = [_Op(codes[int(op.scalar(0, "I", 0))], op.ints(1), op.ints(2), op.table(4)) for op in sg.tables(3)]
        return TFLiteGraph(shapes, names, types, constants, sg.ints(1), sg.ints(2), ops)
    except (struct.error, IndexError, ValueError) as exc:
        if isinstance(exc, TFLiteError):
            raise
        raise TFLiteError(f"{name} is damaged or truncated ({type(exc).__name__}: {exc})") from exc


def _buffer_bytes(b: _Table, whole: memoryview) -> memoryview:
    data = b.bytes_(0)
    if len(data):
        return data
    offset, size = int(b.scalar(1, "Q", 0)), int(b.scalar(2, "Q", 0))
    if offset > 1 and size:
        return whole[offset : offset + size]
    return data


# --------------------------------------------------------------------------- interpreter


def _activation(x: torch.Tensor, act: int, what: str) -> torch.Tensor:
    if act == ACT_NONE:
        return x
    if act == ACT_RELU:
        return F.relu(x)
    if act == ACT_RELU6:
        return x.clamp(0.0, 6.0)
    raise TFLiteError(f"{what}: fused activation {act} is not supported")


def _same_padding(size: int, k: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow SAME padding (before, after) for one spatial axis."""
    eff = (k - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


class TFLiteModel:
    """A TFLite image model executed with torch (CPU, float32, inference only).

    Args:
        data: the ``.tflite`` file's bytes.
        name: how to call the model in errors.

    Raises:
        TFLiteError: an unsupported operator, type or layout (checked when loading).
    """

    def __init__(self, data: bytes, name: str = "model") -> None:
        self.name = name
        self.graph = g = parse_tflite(data, name)
        for t in g.inputs:
            if g.types[t] != TYPE_FLOAT32:
                raise TFLiteError(f"{name}: input '{g.names[t]}' is not float32")
        self._weights: dict[int, torch.Tensor] = {}
        self._steps: list[tuple[_Op, dict[str, Any]]] = []
        for op in g.ops:
            self._steps.append((op, self._prepare(op)))

    @property
    def input_shapes(self) -> list[tuple[int, ...]]:
        """NHWC shapes of the inputs."""
        return [self.graph.shapes[t] for t in self.graph.inputs]

    @property
    def output_names(self) -> list[str]:
        return [self.graph.names[t] for t in self.graph.outputs]

    # ------------------------------------------------------------------ loading

    def _const(self, index: int) -> NDArray[np.float32]:
        g = self.graph
        if index not in g.constants:
            raise TFLiteError(f"{self.name}: tensor '{g.names[index]}' should be a constant")
        return np.asarray(g.constants[index], dtype=np.float32)

    def _prepare(self, op: _Op) -> dict[str, Any]:
        """Per-operator constants converted once: torch weights, paddings, shapes."""
        opt, code = op.options, op.code
        what = f"{self.name}: {OP_NAMES.get(code, f'operator {code}')}"
        g = self.graph
        if code not in OP_NAMES:
            raise TFLiteError(f"{self.name}: operator code {code} is not supported by lpstudio's TFLite reader")
        if code in (OP_DEQUANTIZE, OP_DENSIFY):  # constants: folded once (sparse ones were expanded when read)
            src = op.inputs[0]
            if src not in g.constants:
                raise TFLiteError(f"{what} of a non-constant tensor is not supported")
            g.constants[op.outputs[0]] = np.asarray(g.constants[src], dtype=np.float32)
            return {"skip": True}
        if code == OP_RESIZE_BILINEAR:
            size = g.constants.get(op.inputs[1])
            align = bool(opt.scalar(2, "b", 0)) if opt else False
            half = bool(opt.scalar(3, "b", 0)) if opt else False
            if size is None or np.asarray(size).shape != (2,):
                raise TFLiteError(f"{what}: the output size must be a constant (2,) tensor")
            if align == half:
                raise TFLiteError(f"{what}: only half-pixel centres or aligned corners are supported")
            return {"size": (int(size[0]), int(size[1])), "align_corners": align}
        if code == OP_DEPTH_TO_SPACE:
            block = int(opt.scalar(0, "i", 0)) if opt else 0
            if block < 1:
                raise TFLiteError(f"{what}: block size {block} is not valid")
            return {"block": block}
        if code == OP_CONV_2D:
            w = self._const(op.inputs[1])  # (O, H, W, I)
            b = self._const(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
            return {
                "w": torch.from_numpy(np.ascontiguousarray(w.transpose(0, 3, 1, 2))),
                "b": None if b is None else torch.from_numpy(b.copy()),
                "padding": opt.scalar(0, "b", 0) if opt else PADDING_SAME,
                "stride": (opt.scalar(2, "i", 1), opt.scalar(1, "i", 1)) if opt else (1, 1),
                "act": opt.scalar(3, "b", 0) if opt else ACT_NONE,
                "dilation": (opt.scalar(5, "i", 1), opt.scalar(4, "i", 1)) if opt else (1, 1),
                "groups": 1,
                "what": what,
            }
        if code == OP_DEPTHWISE_CONV_2D:
            w = self._const(op.inputs[1])  # (1, H, W, C * m)
            b = self._const(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
            channels_in = g.shapes[op.inputs[0]][3]
            return {
                "w": torch.from_numpy(np.ascontiguousarray(w[0].transpose(2, 0, 1)[:, None])),
                "b": None if b is None else torch.from_numpy(b.copy()),
                "padding": opt.scalar(0, "b", 0) if opt else PADDING_SAME,
                "stride": (opt.scalar(2, "i", 1), opt.scalar(1, "i", 1)) if opt else (1, 1),
                "act": opt.scalar(4, "b", 0) if opt else ACT_NONE,
                "dilation": (opt.scalar(6, "i", 1), opt.scalar(5, "i", 1)) if opt else (1, 1),
                "groups": channels_in,
                "what": what,
            }
        if code in (OP_MAX_POOL_2D, OP_AVERAGE_POOL_2D):
            if opt is None:
                raise TFLiteError(f"{what} without options")
            return {
                "padding": opt.scalar(0, "b", 0),
                "stride": (opt.scalar(2, "i", 1), opt.scalar(1, "i", 1)),
                "kernel": (opt.scalar(4, "i", 1), opt.scalar(3, "i", 1)),
                "act": opt.scalar(5, "b", 0),
                "what": what,
            }
        if code == OP_PAD:
            pads = np.asarray(g.constants.get(op.inputs[1]), dtype=np.int64)
            if pads.shape != (len(g.shapes[op.inputs[0]]), 2):
                raise TFLiteError(f"{what}: paddings must be a constant (rank, 2) tensor")
            return {"pads": pads}
        if code == OP_PRELU:
            alpha = self._const(op.inputs[1]).reshape(-1)
            return {"alpha": torch.from_numpy(alpha.copy())}
        if code == OP_RESHAPE:
            return {"shape": tuple(int(v) for v in g.shapes[op.outputs[0]])}
        if code == OP_CONCATENATION:
            return {"axis": opt.scalar(0, "i", 0) if opt else 0, "act": opt.scalar(1, "b", 0) if opt else 0}
        if code == OP_ADD:
            return {"act": opt.scalar(0, "b", 0) if opt else ACT_NONE, "what": what}
        return {}

    # ------------------------------------------------------------------ running

    def _value(self, env: dict[int, torch.Tensor], index: int) -> torch.Tensor:
        if index in env:
            return env[index]
        const = self.graph.constants.get(index)
        if const is None:
            raise TFLiteError(f"{self.name}: tensor '{self.graph.names[index]}' is used before it is computed")
        t = self._weights.get(index)
        if t is None:
            arr = np.asarray(const, dtype=np.float32)
            t = torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2) if arr.ndim == 4 else arr))
            self._weights[index] = t
        return t

    @torch.inference_mode()
    def __call__(self, *inputs: NDArray[np.float32]) -> list[NDArray[np.float32]]:
        """Run the model.

        Args:
            inputs: one NHWC float32 array per graph input, of the graph's shape.

        Returns:
            The graph's outputs as float32 numpy arrays in TFLite (NHWC) layout.
        """
        g = self.graph
        if len(inputs) != len(g.inputs):
            raise TFLiteError(f"{self.name} takes {len(g.inputs)} inputs, got {len(inputs)}")
        env: dict[int, torch.Tensor] = {}
        for t, arr in zip(g.inputs, inputs):
            a = np.asarray(arr, dtype=np.float32)
            if tuple(a.shape) != tuple(g.shapes[t]):
                raise TFLiteError(f"{self.name}: input '{g.names[t]}' must have shape {g.shapes[t]}, got {a.shape}")
            x = torch.from_numpy(np.ascontiguousarray(a))
            env[t] = x.permute(0, 3, 1, 2).contiguous() if x.ndim == 4 else x
        for op, prep in self._steps:
            if prep.get("skip"):
                continue
            env[op.outputs[0]] = self._run(op, prep, env)
        outs = []
        for t in g.outputs:
            y = env[t] if t in env else self._value(env, t)
            if y.ndim == 4:
                y = y.permute(0, 2, 3, 1)
            outs.append(y.contiguous().numpy().copy())
        return outs

    def _run(self, op: _Op, p: dict[str, Any], env: dict[int, torch.Tensor]) -> torch.Tensor:
        code = op.code
        x = self._value(env, op.inputs[0])
        if code in (OP_CONV_2D, OP_DEPTHWISE_CONV_2D):
            w = p["w"]
            if p["padding"] == PADDING_SAME:
                ph = _same_padding(x.shape[2], w.shape[2], p["stride"][0], p["dilation"][0])
                pw = _same_padding(x.shape[3], w.shape[3], p["stride"][1], p["dilation"][1])
                if ph[0] == ph[1] and pw[0] == pw[1]:
                    pad: tuple[int, int] | int = (ph[0], pw[0])
                else:
                    x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]))
                    pad = 0
            else:
                pad = 0
            y = F.conv2d(x, w, p["b"], stride=p["stride"], padding=pad, dilation=p["dilation"], groups=p["groups"])
            return _activation(y, p["act"], p["what"])
        if code in (OP_MAX_POOL_2D, OP_AVERAGE_POOL_2D):
            k, s = p["kernel"], p["stride"]
            if p["padding"] == PADDING_SAME:
                ph = _same_padding(x.shape[2], k[0], s[0])
                pw = _same_padding(x.shape[3], k[1], s[1])
                if any(ph + pw):
                    fill = float("-inf") if code == OP_MAX_POOL_2D else 0.0
                    x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]), value=fill)
                    if code == OP_AVERAGE_POOL_2D:
                        raise TFLiteError(f"{p['what']}: SAME-padded average pooling is not supported")
            pool = F.max_pool2d if code == OP_MAX_POOL_2D else F.avg_pool2d
            return _activation(pool(x, k, s), p["act"], p["what"])
        if code == OP_ADD:
            y = self._value(env, op.inputs[1])
            return _activation(x + y, p["act"], p["what"])
        if code == OP_RELU:
            return F.relu(x)
        if code == OP_RELU6:
            return x.clamp(0.0, 6.0)
        if code == OP_LOGISTIC:
            return torch.sigmoid(x)
        if code == OP_PRELU:
            alpha = p["alpha"]
            shape = (1, -1, 1, 1) if x.ndim == 4 else (1,) * (x.ndim - 1) + (-1,)
            return torch.where(x >= 0, x, x * alpha.reshape(shape))
        if code == OP_PAD:
            pads = p["pads"]
            if x.ndim == 4:  # NHWC paddings -> F.pad order (W, H, C) on NCHW
                order = [2, 1, 3]
                flat = [int(v) for axis in order for v in pads[axis]]
                if pads[0].any():
                    raise TFLiteError(f"{self.name}: PAD of the batch axis is not supported")
                return F.pad(x, tuple(flat))
            flat = [int(v) for axis in reversed(range(x.ndim)) for v in pads[axis]]
            return F.pad(x, tuple(flat))
        if code == OP_RESHAPE:
            src = x.permute(0, 2, 3, 1) if x.ndim == 4 else x
            y = src.reshape(p["shape"])
            return y.permute(0, 3, 1, 2) if y.ndim == 4 else y
        if code == OP_RESIZE_BILINEAR:
            return F.interpolate(x, size=p["size"], mode="bilinear", align_corners=p["align_corners"])
        if code == OP_DEPTH_TO_SPACE:
            n, c, h, w = x.shape
            b = p["block"]
            y = x.reshape(n, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2)
            return y.reshape(n, c // (b * b), h * b, w * b)
        if code == OP_CONCATENATION:
            parts = [self._value(env, i) for i in op.inputs]
            axis = p["axis"]
            nd = parts[0].ndim
            axis = axis % nd
            if nd == 4:
                axis = {0: 0, 1: 2, 2: 3, 3: 1}[axis]
            return _activation(torch.cat(parts, dim=axis), p["act"], "CONCATENATION")
        raise TFLiteError(f"{self.name}: operator {OP_NAMES.get(code, code)} is not supported")
