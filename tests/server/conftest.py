"""App fixtures: the session's synthetic engine behind the real FastAPI app."""

from __future__ import annotations

from urllib.parse import urljoin

import pytest
import service_helpers  # noqa: F401  (puts benchmarks/ on the path for the stand-in renderer)
from fastapi.testclient import TestClient

from lpstudio.server import ServerSettings, ServiceLimits, create_app

LOCAL_BASE_URL = "http://localhost"
"""TestClient's own default (http://testserver) names a host the app refuses (421): tests talk to localhost."""
LOCAL_WS_URL = "ws://localhost"
"""TestClient.websocket_connect joins its URL to ws://testserver whatever base_url says."""


@pytest.fixture(scope="session", autouse=True)
def _clients_talk_to_localhost():
    """Every TestClient of these tests defaults to ``Host: localhost``, as a browser on this machine sends.

    The app answers only allowed Host names (DNS rebinding guard, server/http.py); a test that means
    another host passes ``base_url`` or a ``Host`` header itself.
    """
    init, connect = TestClient.__init__, TestClient.websocket_connect

    def local_init(self, app, base_url: str = LOCAL_BASE_URL, *args, **kwargs) -> None:  # noqa: ANN001
        init(self, app, base_url, *args, **kwargs)

    def local_connect(self, url: str, *args, **kwargs):  # noqa: ANN001, ANN202
        return connect(self, urljoin(LOCAL_WS_URL, url), *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TestClient, "__init__", local_init)
        patch.setattr(TestClient, "websocket_connect", local_connect)
        yield


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
