"""The page's icon at ``/favicon.ico``: one small SVG shipped in ``web/`` (the page names it with its type).

Browsers ask for ``/favicon.ico`` whether or not the page names an icon; without this it was a
404 in every console. Registered on the app like every route, so the same Host/Origin guard
(``server/http.py``) applies; it is one of that guard's public paths (no API key), like the page.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import Response

ICON_PATH = "/favicon.ico"
ICON_FILE = "favicon.svg"
ICON_TYPE = "image/svg+xml"
ICON_MAX_AGE_S = 86_400
"""Browsers may keep the icon a day."""


def _icon() -> bytes:
    return resources.files("lpstudio").joinpath("web", ICON_FILE).read_bytes()


def register_favicon(app: FastAPI) -> None:
    """Add ``GET /favicon.ico`` (an SVG, served as such: browsers take an icon by its type, not its name)."""

    @app.get(ICON_PATH, include_in_schema=False)
    async def icon() -> Response:
        return Response(_icon(), media_type=ICON_TYPE, headers={"Cache-Control": f"max-age={ICON_MAX_AGE_S}"})
