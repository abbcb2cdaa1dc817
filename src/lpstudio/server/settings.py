"""How ``lpstudio serve`` runs: behaviour settings plus the :class:`~lpstudio.server.limits.ServiceLimits`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .limits import ServiceLimits


@dataclass
class ServerSettings:
    """How the web app behaves; every bound lives in :attr:`limits`."""

    crop: bool = True
    fps: float = 25.0
    batch_size: int = 4
    idle_default: bool = True
    default_source: Path | None = None  # the bundled sample when None
    prerender: bool = False  # render the button presets of a new photo in the background
    idle_pieces: bool = False  # render each photo's idle segments and gaze atlas in the background (serve: on)
    api_key: str | None = None  # when set, the API needs it (X-API-Key header)
    allowed_origins: tuple[str, ...] = ()  # other sites whose pages may call the API (CORS); none by default
    # Host names answered besides localhost / loopback addresses (DNS rebinding guard): the --host value
    # and each --allow-host (see server.http.hosts_to_allow); any other Host header gets 421.
    allowed_hosts: tuple[str, ...] = ()
    encode_threads: int = 2  # threads compositing and JPEG-encoding frames
    limits: ServiceLimits = field(default_factory=ServiceLimits)
