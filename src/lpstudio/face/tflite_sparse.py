"""Sparse constant tensors of TFLite models, expanded to dense arrays when a model is read.

MediaPipe's full-range face detector (``face_detection_full_range_sparse.tflite``)
stores most of its 1x1 convolution weights sparsely: a ``DENSIFY`` operator turns
them dense at run time. :func:`parse_tflite <lpstudio.face.tflite.parse_tflite>`
expands them once when reading the file (with :func:`densify`), so ``DENSIFY``
becomes a constant copy for both our interpreter and the ONNX conversion.

Facts from the TFLite schema (``tensorflow/lite/schema/schema.fbs``) and its
format converter (``tensorflow/lite/kernels/internal/utils/sparsity_format_converter.cc``):

* ``Tensor`` field 6 is ``sparsity: SparsityParameters``;
* ``SparsityParameters``: 0 ``traversal_order`` [int], 1 ``block_map`` [int],
  2 ``dim_metadata`` [DimensionMetadata];
* ``DimensionMetadata``: 0 ``format`` (byte: DENSE = 0, SPARSE_CSR = 1),
  1 ``dense_size`` (int), 2/3 ``array_segments`` (union type byte, table),
  4/5 ``array_indices`` (union type byte, table); the union
  ``SparseIndexVector`` is Int32Vector = 1, Uint16Vector = 2, Uint8Vector = 3,
  each a table whose field 0 is the ``values`` vector;
* the stored values are the non-zeros in traversal order: level ``k`` of the
  traversal walks dimension ``traversal_order[k]`` (a number ``>= rank`` is
  block dimension ``traversal_order[k] - rank`` of original dimension
  ``block_map[...]``); a DENSE level has ``dense_size`` children per parent
  (child position ``parent * dense_size + i``), a SPARSE_CSR level the children
  ``array_segments[parent] .. array_segments[parent + 1]`` with coordinates
  ``array_indices[child]``.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

FORMAT_DENSE, FORMAT_SPARSE_CSR = 0, 1
#: ``SparseIndexVector`` union member -> element format of its ``values`` vector.
_INDEX_FORMATS: dict[int, tuple[str, int]] = {1: ("<i4", 4), 2: ("<u2", 2), 3: ("u1", 1)}


class _TableLike(Protocol):
    buf: memoryview

    def scalar(self, index: int, fmt: str, default: int | float = 0) -> Any: ...
    def ints(self, index: int) -> list[int]: ...
    def table(self, index: int) -> Any: ...
    def tables(self, index: int) -> list[Any]: ...
    def _vector(self, index: int) -> tuple[int, int]: ...


def _index_vector(meta: _TableLike, type_field: int, table_field: int) -> NDArray[np.int64]:
    kind = int(meta.scalar(type_field, "B", 0))
    fmt = _INDEX_FORMATS.get(kind)
    holder = meta.table(table_field)
    if fmt is None or holder is None:
        raise ValueError(f"sparse index vector of unsupported kind {kind}")
    start, n = holder._vector(0)
    return np.frombuffer(bytes(holder.buf[start : start + n * fmt[1]]), dtype=fmt[0]).astype(np.int64)


def densify(values: NDArray[Any], shape: tuple[int, ...], sparsity: _TableLike) -> NDArray[Any]:
    """Expand a sparse constant to its dense array.

    Args:
        values: (nnz,) the stored values, in traversal order.
        shape: the tensor's dense shape, e.g. (O, H, W, I).
        sparsity: the tensor's ``SparsityParameters`` table.

    Returns:
        Array of ``shape`` and ``values.dtype``, zeros where nothing is stored.

    Raises:
        ValueError: inconsistent metadata (the caller reports the file as damaged).
    """
    rank = len(shape)
    order = sparsity.ints(0)
    block_map = sparsity.ints(1)
    metas = sparsity.tables(2)
    if len(order) != len(metas) or len(order) != rank + len(block_map):
        raise ValueError("sparsity metadata does not match the tensor's rank")
    positions = np.zeros(1, dtype=np.int64)
    coords: list[NDArray[np.int64]] = []
    for meta in metas:
        if int(meta.scalar(0, "b", FORMAT_DENSE)) == FORMAT_DENSE:
            size = int(meta.scalar(1, "i", 0))
            child = np.arange(size, dtype=np.int64)
            parents = positions.size
            coords = [np.repeat(c, size) for c in coords]
            positions = (positions[:, None] * size + child[None, :]).reshape(-1)
            coords.append(np.tile(child, parents))
        else:
            segments = _index_vector(meta, 2, 3)
            indices = _index_vector(meta, 4, 5)
            starts, ends = segments[positions], segments[positions + 1]
            counts = ends - starts
            coords = [np.repeat(c, counts) for c in coords]
            first = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
            positions = np.arange(int(counts.sum()), dtype=np.int64) + first
            coords.append(indices[positions])
    if positions.size != values.size:
        raise ValueError(f"sparse tensor holds {values.size} values but its metadata addresses {positions.size}")
    index = [np.zeros(values.size, dtype=np.int64) for _ in range(rank)]
    block_size = {block_map[b]: int(metas[order.index(rank + b)].scalar(1, "i", 1)) for b in range(len(block_map))}
    for level, dim in enumerate(order):
        if dim < rank:
            index[dim] += coords[level] * block_size.get(dim, 1)
        else:
            index[block_map[dim - rank]] += coords[level]
    dense = np.zeros(shape, dtype=values.dtype)
    dense[tuple(index)] = values
    return dense


__all__ = ["FORMAT_DENSE", "FORMAT_SPARSE_CSR", "densify"]
