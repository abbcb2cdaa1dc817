"""What every browser test shares: Debian's Chromium, its flags, the skip/fail rule, a free loopback port."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


def require_browser() -> None:
    """Skip without Debian's Chromium or Playwright; fail instead where ``LPSTUDIO_REQUIRE_BROWSER`` is set (CI)."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("LPSTUDIO_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} is missing (install Debian's chromium)")
        pytest.skip(f"{CHROMIUM} is not installed")
    pytest.importorskip("playwright.sync_api")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
