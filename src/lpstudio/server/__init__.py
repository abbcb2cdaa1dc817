"""The local web app (``lpstudio serve``)."""

from .app import create_app
from .limits import ServiceLimits
from .settings import ServerSettings

__all__ = ["ServerSettings", "ServiceLimits", "create_app"]
