"""Sparse TFLite constants expanded by :func:`lpstudio.face.tflite_sparse.densify`, without any model file.

Small stand-ins of the ``SparsityParameters`` / ``DimensionMetadata`` tables hold the
metadata; the expected dense arrays are written out by hand from the format's rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from lpstudio.face.tflite_sparse import FORMAT_DENSE, FORMAT_SPARSE_CSR, densify


@dataclass
class _Vector:
    """A ``SparseIndexVector`` member table: field 0 is its ``values`` (uint8 here)."""

    values: list[int]
    buf: memoryview = field(init=False)

    def __post_init__(self) -> None:
        self.buf = memoryview(bytes(self.values))

    def _vector(self, index: int) -> tuple[int, int]:
        return 0, len(self.values)


@dataclass
class _Dim:
    fmt: int
    size: int = 0
    segments: list[int] | None = None
    indices: list[int] | None = None

    def scalar(self, index: int, fmt: str, default: int | float = 0):  # noqa: ANN201
        if index == 0:
            return self.fmt
        if index == 1:
            return self.size
        if index in (2, 4):  # union type: Uint8Vector
            return 3 if self.fmt == FORMAT_SPARSE_CSR else 0
        return default

    def table(self, index: int) -> _Vector | None:
        if self.fmt != FORMAT_SPARSE_CSR:
            return None
        return _Vector(self.segments if index == 3 else self.indices)  # type: ignore[arg-type]


@dataclass
class _Sparsity:
    order: list[int]
    block_map: list[int]
    dims: list[_Dim]

    def ints(self, index: int) -> list[int]:
        return self.order if index == 0 else self.block_map

    def tables(self, index: int) -> list[_Dim]:
        return self.dims


def test_csr_rows() -> None:
    """[[0, 5, 0], [7, 0, 9]]: rows dense, columns CSR."""
    sp = _Sparsity([0, 1], [], [_Dim(FORMAT_DENSE, 2), _Dim(FORMAT_SPARSE_CSR, segments=[0, 1, 3], indices=[1, 0, 2])])
    got = densify(np.array([5, 7, 9], np.float32), (2, 3), sp)
    np.testing.assert_array_equal(got, [[0, 5, 0], [7, 0, 9]])


def test_conv_weight_layout_as_in_the_full_range_model() -> None:
    """(O, 1, 1, I) with the last axis CSR (the layout of the model's 1x1 convolutions)."""
    w = np.zeros((3, 1, 1, 4), np.float16)
    w[0, 0, 0, 2], w[2, 0, 0, 0], w[2, 0, 0, 3] = 1.5, -2.0, 4.0
    dims = [_Dim(FORMAT_DENSE, 3), _Dim(FORMAT_DENSE, 1), _Dim(FORMAT_DENSE, 1)]
    dims.append(_Dim(FORMAT_SPARSE_CSR, segments=[0, 1, 1, 3], indices=[2, 0, 3]))
    got = densify(np.array([1.5, -2.0, 4.0], np.float16), w.shape, _Sparsity([0, 1, 2, 3], [], dims))
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, w)


def test_block_sparse() -> None:
    """A 4x4 matrix in 2x2 blocks: block rows dense, block columns CSR, each block dense inside."""
    dense = np.zeros((4, 4), np.float32)
    dense[0:2, 2:4] = [[1, 2], [3, 4]]
    dense[2:4, 0:2] = [[5, 6], [7, 8]]
    dims = [
        _Dim(FORMAT_DENSE, 2),
        _Dim(FORMAT_SPARSE_CSR, segments=[0, 1, 2], indices=[1, 0]),
        _Dim(FORMAT_DENSE, 2),
        _Dim(FORMAT_DENSE, 2),
    ]
    got = densify(np.arange(1, 9, dtype=np.float32), (4, 4), _Sparsity([0, 1, 2, 3], [0, 1], dims))
    np.testing.assert_array_equal(got, dense)


def test_inconsistent_metadata_is_refused() -> None:
    sp = _Sparsity([0, 1], [], [_Dim(FORMAT_DENSE, 2), _Dim(FORMAT_SPARSE_CSR, segments=[0, 1, 3], indices=[1, 0, 2])])
    with pytest.raises(ValueError, match="holds 2 values"):
        densify(np.array([5, 7], np.float32), (2, 3), sp)
