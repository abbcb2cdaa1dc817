"""lpstudio.heap: freed memory is given back, at most once per interval."""

from __future__ import annotations

import sys

import pytest

from lpstudio import heap

glibc = pytest.mark.skipif(heap._load_trim() is None, reason="malloc_trim is glibc's (Linux) only")


@glibc
def test_trims_at_most_once_per_interval() -> None:
    t0 = 1e9
    assert heap.release_freed_memory(force=True, now=t0)
    assert not heap.release_freed_memory(now=t0 + heap.TRIM_INTERVAL_S / 2)
    assert heap.release_freed_memory(now=t0 + heap.TRIM_INTERVAL_S * 1.01)
    assert heap.release_freed_memory(force=True, now=t0 + heap.TRIM_INTERVAL_S * 1.02)


def test_no_trim_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert heap._load_trim() is None
