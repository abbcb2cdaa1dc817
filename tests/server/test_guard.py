"""The guard on the stand-in renderer: Host allow-list (DNS rebinding), origins, paths, errors seen in the log.

The live socket's part of the guard (origin, ticket, caps, idle timeout, draining) is in test_live_socket.py.
"""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient
from standin_server import StandInEngine

from lpstudio.errors import ParamError
from lpstudio.server import ServerSettings, create_app
from lpstudio.server.http import hosts_to_allow, normalize_host

PORT = 8765  # the default port of `lpstudio serve`; any port is treated alike


def _app(**settings):
    engine = StandInEngine(frame_ms=1, prepare_ms=0)
    return create_app(engine, ServerSettings(crop=False, fps=25.0, idle_default=False, **settings))


# ---------------------------------------------------------------------- Host (DNS rebinding)
@pytest.mark.parametrize("method,path", [("GET", "/health"), ("GET", "/expressions"), ("POST", "/session")])
def test_a_rebinding_host_is_421_on_get_and_post(method, path):
    with TestClient(_app()) as c:
        res = c.request(method, path, headers={"Host": f"evil.example:{PORT}"})
        ok = c.request(method, path, headers={"Host": f"127.0.0.1:{PORT}"})
    assert res.status_code == 421, res.text
    body = res.json()
    assert body["kind"] == "MisdirectedRequest" and "evil.example" in body["error"] and "--allow-host" in body["hint"]
    assert ok.status_code == 200


@pytest.mark.parametrize("host", ["localhost", f"localhost:{PORT}", "127.0.0.1", f"[::1]:{PORT}", "[::1]"])
def test_loopback_names_are_answered_on_any_port(host):
    with TestClient(_app()) as c:
        assert c.get("/health", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["", "evil.example", "127.0.0.1.evil.example", "localhost.evil.example",
                                  "[::1", "localhost:x", "::1", "0.0.0.0"])  # fmt: skip
def test_other_and_malformed_hosts_are_refused(host):
    with TestClient(_app()) as c:
        assert c.get("/health", headers={"Host": host}).status_code == 421


def test_a_foreign_origin_is_refused_even_with_a_matching_host():
    """The rebinding page sends Origin and Host of its own name: both are refused, even on a GET."""
    with TestClient(_app()) as c:
        both_evil = c.post(
            "/session", headers={"Host": f"evil.example:{PORT}", "Origin": f"http://evil.example:{PORT}"}
        )
        origin_evil = c.post("/session", headers={"Host": f"localhost:{PORT}", "Origin": f"http://evil.example:{PORT}"})
        get_evil = c.get("/expressions", headers={"Host": f"localhost:{PORT}", "Origin": f"http://evil.example:{PORT}"})
        own = c.post("/session", headers={"Host": f"localhost:{PORT}", "Origin": f"http://localhost:{PORT}"})
    assert both_evil.status_code == 421
    assert origin_evil.status_code == 403 and get_evil.status_code == 403
    assert origin_evil.json()["kind"] == "Forbidden"
    assert own.status_code == 200


def test_allow_host_makes_a_name_work():
    settings = {"allowed_hosts": hosts_to_allow("0.0.0.0", ["Studio.LAN", "192.168.1.5", "fe80::1"])}
    with TestClient(_app(**settings)) as c:
        named = c.post("/session", headers={"Host": f"studio.lan:{PORT}", "Origin": f"http://studio.lan:{PORT}"})
        address = c.get("/health", headers={"Host": "192.168.1.5"})
        v6 = c.get("/health", headers={"Host": f"[fe80::1]:{PORT}"})
        other = c.get("/health", headers={"Host": "studio.lan.evil.example"})
    assert named.status_code == 200 and address.status_code == 200 and v6.status_code == 200
    assert other.status_code == 421


def test_allowed_hosts_come_from_host_and_allow_host_not_from_a_wildcard():
    assert hosts_to_allow("0.0.0.0") == () and hosts_to_allow("::") == ()
    assert hosts_to_allow("192.168.1.5", ["studio.lan", "STUDIO.lan"]) == ("192.168.1.5", "studio.lan")
    assert hosts_to_allow("::1") == ("[::1]",)
    for bad in ["http://studio.lan", "studio.lan:8765", "studio lan", "studio.lan/x", ""]:
        with pytest.raises(ParamError, match="not a host name"):
            normalize_host(bad)


def test_cli_has_allow_host_and_refuses_a_bad_one_before_loading(capsys):
    from lpstudio.cli import main

    code = main(["serve", "--host", "0.0.0.0", "--allow-host", "http://studio.lan", "--engine-factory", "nope:x"])
    err = capsys.readouterr().err
    assert code != 0 and "not a host name" in err


# ---------------------------------------------------------------------- paths and errors seen
@pytest.mark.parametrize("path", ["/static/app%00.js", "/static/%00", "/static/live.js%0a", "/health%00", "/%7f"])
def test_control_characters_in_a_path_are_400_never_500(path):
    with TestClient(_app(), raise_server_exceptions=False) as c:
        res = c.get(path)
    assert res.status_code == 400, res.text
    assert res.json()["kind"] == "BadRequest" and "control characters" in res.json()["error"]


def test_escape_sequences_in_a_url_are_escaped_in_the_access_log(caplog):
    caplog.set_level(logging.INFO, logger="lpstudio.access")
    with TestClient(_app()) as c:
        res = c.get("/no-such-page%1b[31mRED%e2%80%aeevil")
    assert 400 <= res.status_code < 500
    lines = [r.getMessage() for r in caplog.records if r.name == "lpstudio.access" and "no-such-page" in r.getMessage()]
    assert len(lines) == 1
    assert "\x1b" not in lines[0] and "\u202e" not in lines[0]
    assert "/no-such-page\\x1b[31mRED\\u202eevil" in lines[0]


def test_a_forced_500_is_logged_and_counted_as_500_with_a_request_id(caplog):
    caplog.set_level(logging.INFO, logger="lpstudio.access")
    app = _app()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals: /home/user/model.pt")

    with TestClient(app, raise_server_exceptions=False) as c:
        res = c.get("/boom")
        metrics = c.get("/metrics").text
    assert res.status_code == 500
    body = res.json()
    assert body["kind"] == "InternalError" and "secret" not in res.text and "RuntimeError" not in res.text
    rid = body["request_id"]
    assert len(rid) >= 8 and rid in body["error"]
    access = [r.getMessage() for r in caplog.records if r.name == "lpstudio.access" and "/boom" in r.getMessage()]
    assert len(access) == 1 and '"GET /boom" 500' in access[0] and f"id={rid}" in access[0]
    errors = [r for r in caplog.records if r.name == "lpstudio.server.responses" and r.levelno == logging.ERROR]
    assert any(rid in r.getMessage() and r.exc_info for r in errors), "the traceback is logged with the request id"
    assert 'lpstudio_http_requests_total{route="/boom",status="500"} 1.0' in metrics
    assert 'status="499"' not in metrics
