"""App fixtures: the session's synthetic engine behind the real FastAPI app."""

from __future__ import annotations

import pytest
import service_helpers  # noqa: F401  (puts benchmarks/ on the path for the stand-in renderer)
from fastapi.testclient import TestClient

from lpstudio.server import ServerSettings, ServiceLimits, create_app


@pytest.fixture(scope="module")
def client(engine):
    """Pre-cropped mode (no face models), as `lpstudio serve --no-crop` runs."""
    settings = ServerSettings(crop=False, fps=2.0, idle_default=False, limits=ServiceLimits(max_sessions=3))
    app = create_app(engine, settings)
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def session(client) -> str:
    return client.post("/session", json={}).json()["session"]
