"""Give freed heap memory back to the system during long streaming jobs.

A long clip (a 10-minute source video is 15,000 frames) runs the motion network batch after batch.
Each batch allocates and frees large buffers (network inputs of ``(B, 3, 256, 256)`` float32 and the
activations behind them). glibc's allocator raises its mmap threshold after such buffers are freed,
so later ones come from the main heap; small long-lived allocations (the per-frame motion rows kept
for the whole clip) end up between them, the heap cannot shrink from its top, and the resident size
grows with the clip's length although the live data does not: 0.9 GB for 3,000 frames in
``benchmarks/v2v_cost.py``'s memory run before this module, flat after it.

:func:`release_freed_memory` asks glibc (``malloc_trim``) to return free pages, at most once every
:data:`TRIM_INTERVAL_S`; streaming loops call it once per batch. Elsewhere than glibc it does nothing.
No setting of the process is changed: the allocator is only asked to return what is already free.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
import time
from collections.abc import Callable

TRIM_INTERVAL_S = 1.0
"""Least time between two trims (a trim walks the heap's free lists: 5 ms after freeing 1.6 GB here)."""

_lock = threading.Lock()
_state: dict[str, object] = {"trim": None, "loaded": False, "last": 0.0}


def _load_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None (macOS, Windows, musl...)."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


def release_freed_memory(*, force: bool = False, now: float | None = None) -> bool:
    """Return the heap's free pages to the system, unless that was done less than
    :data:`TRIM_INTERVAL_S` ago (``force``: now anyway). True when a trim ran."""
    t = time.monotonic() if now is None else now
    with _lock:
        if not _state["loaded"]:
            _state["trim"], _state["loaded"] = _load_trim(), True
        trim = _state["trim"]
        if trim is None or (not force and t - float(_state["last"]) < TRIM_INTERVAL_S):  # type: ignore[arg-type]
            return False
        _state["last"] = t
    trim(0)  # type: ignore[operator]
    return True
