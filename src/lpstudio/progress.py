"""Progress bars of frame loops: a tqdm bar on stderr, or an object that does nothing."""

from __future__ import annotations

import sys
from typing import Any


class NoBar:
    """Stands in for a tqdm bar when progress is off."""

    total: int | None = None
    n: int = 0

    def update(self, n: int) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int | None, enabled: bool, desc: str) -> Any:
    """A tqdm bar on stderr counting ``total`` frames (a :class:`NoBar` when not ``enabled``)."""
    if not enabled:
        return NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc=desc, file=sys.stderr, dynamic_ncols=True)
