"""A stand-in engine whose every batch spends ``LPSTUDIO_NATIVE_WAIT_S`` seconds inside a torch C++ call
(a store wait with the GIL released, no CPU used): the state a real W+G batch is in when the server stops.

``lpstudio serve --engine-factory native_standin:make_engine`` (with ``benchmarks/`` and this folder on
``PYTHONPATH``).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from standin_server import StandInEngine
from standin_server import make_engine as make_standin

ENV_WAIT_S = "LPSTUDIO_NATIVE_WAIT_S"
DEFAULT_WAIT_S = 6.0


class NativeWaitEngine(StandInEngine):
    """:class:`StandInEngine` whose batches first block in native (C++) code for a fixed time."""

    def __init__(self, wait_s: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        import torch.distributed as dist

        self.wait_s = wait_s
        self._store = dist.HashStore()

    def render_mixed(self, items: Sequence[tuple[Any, Any]]) -> list[np.ndarray]:
        try:  # a key nobody sets: torch waits in C++ with the GIL released, then raises its timeout
            self._store.wait(["never-set"], datetime.timedelta(seconds=self.wait_s))
        except Exception:  # noqa: BLE001 - the timeout is the point
            pass
        return super().render_mixed(items)


def make_engine(crop: bool = False) -> NativeWaitEngine:
    base = make_standin(crop=crop)
    return NativeWaitEngine(
        float(os.environ.get(ENV_WAIT_S, DEFAULT_WAIT_S)), frame_ms=base.frame_ms, prepare_ms=base.prepare_ms
    )
