"""The first ten minutes: no hub, synthetic weights for an offline tour, a port in use, no torch.

Each failure is one line on stderr naming what failed and what to do, with its own exit code.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lpstudio import weights as W
from lpstudio.checkpoint import MODULE_FILES
from lpstudio.cli import TORCH_CPU_INSTALL, main
from lpstudio.errors import AddressInUseError, WeightsError

SAMPLE = "src/lpstudio/assets/astronaut.png"
UNREACHABLE_HUB = "http://127.0.0.1:9"  # the discard port: nothing listens there, the connection is refused
THREE_WAYS = ("--weights-dir", "LPSTUDIO_WEIGHTS_DIR", "HF_ENDPOINT", "lpstudio weights synthetic")


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {err!r}"
    assert "Traceback" not in err and "Retrying" not in err and "Retry " not in err
    return lines[0]


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An unreachable hub, an empty default weights folder, no $LPSTUDIO_WEIGHTS_DIR; returns the default folder."""
    monkeypatch.setenv("HF_ENDPOINT", UNREACHABLE_HUB)
    monkeypatch.delenv("LPSTUDIO_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(W, "HUB_PROBE_PAUSE_S", 0.01)
    return tmp_path / "cache" / "lpstudio" / "weights"


def test_no_hub_is_one_line_naming_the_three_ways(no_hub: Path, tmp_path: Path, capsys) -> None:
    rc = main(["weights", "download", "--dir", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert rc == WeightsError.exit_code
    line = _one_error_line(err)
    assert f"cannot reach {UNREACHABLE_HUB}" in line and "refused" in line.lower()
    for way in THREE_WAYS:
        assert way in line


def test_hf_hub_offline_is_one_line_without_a_network_call(no_hub: Path, monkeypatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(W, "probe_hub", lambda *a, **k: pytest.fail("no network call when offline"))
    assert main(["weights", "download", "--dir", str(tmp_path / "w")]) == WeightsError.exit_code
    line = _one_error_line(capsys.readouterr().err)
    assert "HF_HUB_OFFLINE is set" in line and all(way in line for way in THREE_WAYS)


def test_first_use_without_a_hub_stops_in_one_line(no_hub: Path, request, tmp_path: Path, capsys) -> None:
    """A command that would download on first use (edit) says the same, after its one 'first use' note."""
    photo = request.config.rootpath / SAMPLE
    rc = main(["edit", str(photo), "--no-crop", "--set", "smile=1", "-o", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert rc == WeightsError.exit_code
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[0].startswith("first use: downloading") and len(lines) == 2, err
    assert all(way in lines[1] for way in THREE_WAYS) and "Retrying" not in err
    assert not (tmp_path / "o.png").exists()


class _FailingHub(BaseHTTPRequestHandler):
    """A mirror that answers 503 to everything (huggingface_hub alone would retry it for ~25 s)."""

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(503)
        self.end_headers()

    do_GET = do_HEAD

    def log_message(self, *args) -> None:
        pass


def test_a_failing_mirror_is_one_line_too(no_hub: Path, monkeypatch, tmp_path: Path, capsys) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FailingHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        rc = main(["weights", "download", "--dir", str(tmp_path / "w")])
    finally:
        server.shutdown()
        server.server_close()
    line = _one_error_line(capsys.readouterr().err)
    assert rc == WeightsError.exit_code and f"cannot reach {endpoint}" in line and "HTTP 503" in line


@pytest.fixture
def synthetic_tour(synthetic_weights_dir: Path, monkeypatch, tmp_path: Path, capsys) -> Path:
    """`lpstudio weights synthetic DIR`, its writer linking the session's synthetic files (written by the same
    writer) instead of writing 500 MB again."""
    import lpstudio.synthetic

    def link(out_dir: Path, seed: int = 0) -> Path:
        for rel in MODULE_FILES.values():
            (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(synthetic_weights_dir / rel, out_dir / rel)
        return out_dir

    monkeypatch.setattr(lpstudio.synthetic, "write_synthetic_weights", link)
    target = tmp_path / "tour"
    assert main(["weights", "synthetic", str(target)]) == 0
    out = capsys.readouterr().out
    assert "synthetic" in out and "noise" in out and f"--weights-dir {target}" in out
    return target


def test_weights_synthetic_writes_the_official_layout_and_is_marked(synthetic_tour: Path, capsys) -> None:
    for rel in MODULE_FILES.values():
        assert (synthetic_tour / rel).is_file(), rel
    assert W.is_synthetic(synthetic_tour)
    rc = main(["weights", "verify", "--dir", str(synthetic_tour), "--quick"])
    captured = capsys.readouterr()
    assert rc == WeightsError.exit_code
    line = _one_error_line(captured.err)
    assert "synthetic weights" in line and "not the official files" in line and "lpstudio weights download" in line
    assert "wrong size" in captured.out  # each file's check is still listed


def test_weights_synthetic_never_overwrites_real_files(tmp_path: Path, capsys) -> None:
    real = tmp_path / "real" / MODULE_FILES["warping_module"]
    real.parent.mkdir(parents=True)
    real.write_bytes(b"the user's own weights")
    assert main(["weights", "synthetic", str(tmp_path / "real")]) == WeightsError.exit_code
    line = _one_error_line(capsys.readouterr().err)
    assert "already holds weight files" in line
    assert real.read_bytes() == b"the user's own weights"


def test_a_command_on_synthetic_weights_warns_once(synthetic_tour: Path, request, tmp_path: Path, capsys) -> None:
    W._synthetic_warned.discard(str(synthetic_tour.resolve()))
    photo = request.config.rootpath / SAMPLE
    args = ["edit", str(photo), "--no-crop", "--set", "smile=1", "-o", str(tmp_path / "o.png")]
    assert main([*args, "--weights-dir", str(synthetic_tour), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert err.count("are synthetic") == 1 and "faces come out as noise" in err
    assert W.warn_if_synthetic(synthetic_tour) is True  # loading again in this process: no second note
    assert "synthetic" not in capsys.readouterr().err


def test_a_port_in_use_is_one_line_with_its_own_exit_code(tmp_path: Path, capsys) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # checked before the weights are looked at: this folder does not exist
        rc = main(["serve", "--port", str(port), "--weights-dir", str(tmp_path / "none")])
    line = _one_error_line(capsys.readouterr().err)
    assert rc == AddressInUseError.exit_code == 6
    assert f"port {port} is in use" in line and "--port" in line and "uvicorn" not in line.lower()


def test_missing_torch_names_the_cpu_wheel(request) -> None:
    code = "import sys; sys.modules['torch'] = None; from lpstudio.cli import main; sys.exit(main(['params']))"
    env = {**os.environ, "PYTHONPATH": str(request.config.rootpath / "src")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    line = _one_error_line(done.stderr)
    assert done.returncode == 4
    assert TORCH_CPU_INSTALL in line and "CUDA" in line


class _NoisyStandIn:
    """A backend whose build and renders make third-party noise, as the ONNX exporter does."""

    def __init__(self, name: str, dtype, cost_s: float, clock: list[float]) -> None:
        import logging
        import warnings

        self.name, self.dtype, self.cost_s, self.clock = name, dtype, cost_s, clock
        logging.getLogger("torch.onnx._internal.exporter._registration").warning(
            "torchvision is not installed. Skipping torchvision::nms"
        )
        warnings.warn_explicit("a future change", FutureWarning, "exporter.py", 1, module="onnxscript.exporter")

    def warp_decode(self, feature, x_s, x_d):
        import torch

        self.clock[0] += self.cost_s * x_d.shape[0]
        return torch.sigmoid(feature.flatten(1).mean(1) + x_d.flatten(1).sum(1))[:, None, None, None].expand(
            -1, 3, 4, 4
        )


def test_first_use_calibration_is_announced_and_keeps_others_warnings_out(monkeypatch, tmp_path, capfd):
    """torch's logger writes to the process's stderr through its own handler: captured at the descriptor."""
    import logging
    import warnings

    import torch

    from lpstudio.backends import auto

    monkeypatch.setenv(auto.ENV_CACHE_DIR, str(tmp_path))
    clock = [0.0]
    costs = {"eager": 2.0, "fused": 1.0}

    def build(name, networks, device, dtype):
        return _NoisyStandIn(name, dtype, costs[name], clock)

    def make_inputs():
        g = torch.Generator().manual_seed(0)
        return (
            torch.randn(2, 2, 2, 2, 2, generator=g),
            torch.randn(2, 21, 3, generator=g),
            torch.randn(2, 21, 3, generator=g),
        )

    records: list[logging.LogRecord] = []
    exporter_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    exporter_log.addHandler(handler)
    filters_before = list(warnings.filters)
    torch_level = logging.getLogger("torch").level
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        choice = auto.choose_backend(
            None, torch.device("cpu"), make_inputs, weights="w", engine_dtype=torch.float32, progress=True,
            candidates=[("fused", torch.float32)], budget_s=240.0, clock=lambda: clock[0], build=build,
        )  # fmt: skip
    err = capfd.readouterr().err
    assert choice.backend == "fused"
    assert (
        "first use on this machine" in err and "one time, about 4 min" in err and str(tmp_path / auto.CACHE_FILE) in err
    )
    assert "torchvision" not in err and not records and "FutureWarning" not in err
    assert not [w for w in seen if issubclass(w.category, FutureWarning)]
    assert logging.getLogger("torch").level == torch_level  # restored
    with pytest.warns(FutureWarning):  # outside the calibration the libraries speak again
        _NoisyStandIn("eager", torch.float32, 1.0, clock)
    assert [r.getMessage() for r in records] == ["torchvision is not installed. Skipping torchvision::nms"]
    exporter_log.removeHandler(handler)
    assert warnings.filters == filters_before
