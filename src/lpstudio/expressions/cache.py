"""A bounded cache of rendered clips, in memory and on disk.

A clip is keyed by what determines its pixels: the source (a digest of the
photo and how it was prepared), the timeline as sampled (its
:meth:`~lpstudio.expressions.timeline.Timeline.key`, which includes fps and the
base pose) and the engine settings (weights, dtype, crop, paste-back...). Replaying
the same expression on the same photo then costs a dictionary look-up.

Memory holds the most recently used clips up to ``max_memory_bytes``; the disk
directory (optional) holds ``.npy`` files up to ``max_disk_bytes``, the least
recently used removed first. The cache is safe to share between threads.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MEMORY_BYTES: int = 512 * 1024**2
DEFAULT_DISK_BYTES: int = 4 * 1024**3
CACHE_FORMAT_VERSION: int = 1


def source_digest(image: np.ndarray, **preparation: Any) -> str:
    """A digest of a source photo's pixels and how it was prepared (``crop=True`` ...)."""
    arr = np.ascontiguousarray(image)
    h = hashlib.sha256()
    h.update(repr((arr.shape, str(arr.dtype), sorted(preparation.items()))).encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def clip_key(source_id: str, timeline_key: str, engine_settings: Mapping[str, Any] | None = None) -> str:
    """The cache key of one rendered clip."""
    payload = {
        "v": CACHE_FORMAT_VERSION,
        "source": source_id,
        "timeline": timeline_key,
        "engine": {str(k): repr(v) for k, v in sorted((engine_settings or {}).items())},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class ClipCache:
    """Rendered clips (``(n_frames, H, W, 3) uint8`` arrays) by :func:`clip_key`."""

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        max_memory_bytes: int = DEFAULT_MEMORY_BYTES,
        max_disk_bytes: int = DEFAULT_DISK_BYTES,
    ) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.max_memory_bytes = int(max_memory_bytes)
        self.max_disk_bytes = int(max_disk_bytes)
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memory_bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)

    # -- memory -----------------------------------------------------------
    def _remember(self, key: str, frames: np.ndarray) -> None:
        if frames.nbytes > self.max_memory_bytes:
            return
        old = self._memory.pop(key, None)
        if old is not None:
            self._memory_bytes -= old.nbytes
        self._memory[key] = frames
        self._memory_bytes += frames.nbytes
        while self._memory_bytes > self.max_memory_bytes and self._memory:
            _, dropped = self._memory.popitem(last=False)
            self._memory_bytes -= dropped.nbytes

    @property
    def memory_bytes(self) -> int:
        return self._memory_bytes

    # -- disk -------------------------------------------------------------
    def _path(self, key: str) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / key[:2] / f"{key}.npy"

    def _disk_files(self) -> list[Path]:
        assert self.directory is not None
        return list(self.directory.glob("*/*.npy"))

    def disk_bytes(self) -> int:
        """Bytes used on disk (0 without a directory)."""
        if self.directory is None:
            return 0
        return sum(p.stat().st_size for p in self._disk_files() if p.exists())

    def _store(self, key: str, frames: np.ndarray) -> None:
        path = self._path(key)
        if path is None or frames.nbytes > self.max_disk_bytes:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, frames, allow_pickle=False)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self._evict_disk()

    def _evict_disk(self) -> None:
        files = []
        for p in self._disk_files():
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            files.append((st.st_mtime, st.st_size, p))
        total = sum(f[1] for f in files)
        for _, size, p in sorted(files):
            if total <= self.max_disk_bytes:
                break
            p.unlink(missing_ok=True)
            total -= size

    def _load(self, key: str) -> np.ndarray | None:
        path = self._path(key)
        if path is None or not path.exists():
            return None
        try:
            frames = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            path.unlink(missing_ok=True)  # a damaged entry is just a miss
            return None
        os.utime(path)  # most recently used
        return frames

    # -- public -----------------------------------------------------------
    def get(self, key: str) -> np.ndarray | None:
        """The cached clip (read-only array) or ``None``."""
        with self._lock:
            frames = self._memory.get(key)
            if frames is not None:
                self._memory.move_to_end(key)
                self.hits += 1
                return frames
            frames = self._load(key)
            if frames is None:
                self.misses += 1
                return None
            frames.setflags(write=False)
            self._remember(key, frames)
            self.hits += 1
            return frames

    def put(self, key: str, frames: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Store a clip; returns it as one read-only ``uint8`` array."""
        arr = np.ascontiguousarray(np.stack(list(frames)) if not isinstance(frames, np.ndarray) else frames)
        if arr.dtype != np.uint8 or arr.ndim != 4:
            raise ValueError(f"a clip is an (n, H, W, C) uint8 array, got {arr.dtype} {arr.shape}")
        arr = arr.copy() if arr.flags.writeable else arr
        arr.setflags(write=False)
        with self._lock:
            self._remember(key, arr)
            self._store(key, arr)
        return arr

    def get_or_render(self, key: str, render: Callable[[], Sequence[np.ndarray] | np.ndarray]) -> np.ndarray:
        """The cached clip, or ``render()`` stored under ``key``."""
        cached = self.get(key)
        if cached is not None:
            return cached
        return self.put(key, render())

    def clear(self) -> None:
        """Forget everything (memory and disk)."""
        with self._lock:
            self._memory.clear()
            self._memory_bytes = 0
            if self.directory is not None:
                for p in self._disk_files():
                    p.unlink(missing_ok=True)

    def __contains__(self, key: str) -> bool:
        path = self._path(key)
        return key in self._memory or (path is not None and path.exists())

    def __len__(self) -> int:
        return len(self._memory)
