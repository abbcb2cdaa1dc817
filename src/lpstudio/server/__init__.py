"""The local web app (``lpstudio serve``)."""

from .app import ServerSettings, create_app

__all__ = ["ServerSettings", "create_app"]
