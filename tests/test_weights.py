"""Weights folder resolution, verification and download (the hub call is replaced by a local copy)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from lpstudio import weights as W
from lpstudio.cli import main
from lpstudio.errors import WeightsError


def test_official_list_matches_shared_reference():
    files = {f.path: f for f in W.official_files()}
    assert W.repo_id() == "KlingTeam/LivePortrait"
    assert len(files) == 8
    assert files["liveportrait/base_models/warping_module.pth"].size == 182180086
    shared = Path(__file__).parents[2] / "shared" / "liveportrait" / "official_weights.json"
    if shared.exists():
        ref = json.loads(shared.read_text())["files"]
        assert {p: (f.sha256, f.size) for p, f in files.items()} == {
            p: (v["sha256"], v["size"]) for p, v in ref.items()
        }


@pytest.fixture
def tiny_official(monkeypatch, tmp_path):
    """Replace the official list by two small files whose contents we know (and the hub counts as reachable)."""
    monkeypatch.setattr(W, "probe_hub", lambda url, **kw: None)
    contents = {"liveportrait/a.pth": b"alpha" * 10, "insightface/models/b.onnx": b"beta" * 7}
    fake = [W.OfficialFile(p, hashlib.sha256(c).hexdigest(), len(c)) for p, c in contents.items()]
    monkeypatch.setattr(W, "official_files", lambda: fake)
    return contents


def _write(root: Path, contents: dict[str, bytes]) -> None:
    for rel, data in contents.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def test_verify_reports_each_problem(tiny_official, tmp_path):
    _write(tmp_path, tiny_official)
    assert all(c.ok for c in W.verify(tmp_path))
    (tmp_path / "liveportrait/a.pth").write_bytes(b"x" * 50)  # same size, other bytes
    (tmp_path / "insightface/models/b.onnx").unlink()
    status = {c.file.path: c.status for c in W.verify(tmp_path)}
    assert status == {"liveportrait/a.pth": "wrong hash", "insightface/models/b.onnx": "missing"}
    (tmp_path / "liveportrait/a.pth").write_bytes(b"short")
    assert W.verify(tmp_path)[0].status == "wrong size"


def test_verify_cli_exit_code_and_message(tiny_official, tmp_path, capsys):
    _write(tmp_path, tiny_official)
    assert main(["weights", "verify", "--dir", str(tmp_path)]) == 0
    (tmp_path / "liveportrait/a.pth").unlink()
    assert main(["weights", "verify", "--dir", str(tmp_path)]) == WeightsError.exit_code
    err = capsys.readouterr().err
    assert "1 of 2 files" in err and "lpstudio weights download" in err


def test_download_uses_hub_and_verifies(tiny_official, tmp_path, monkeypatch):
    calls = []

    def fake_download(repo_id, filename, local_dir, force_download, **kwargs):
        calls.append((repo_id, filename))
        target = Path(local_dir) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(tiny_official[filename])
        return str(target)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    paths = W.download(tmp_path)
    assert sorted(calls) == sorted(("KlingTeam/LivePortrait", p) for p in tiny_official)
    assert all(p.is_file() for p in paths)
    calls.clear()
    W.download(tmp_path)  # complete files are skipped
    assert calls == []


def test_download_failure_is_explained(tiny_official, tmp_path, monkeypatch):
    import huggingface_hub

    def offline(**kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(WeightsError, match="downloading liveportrait/a.pth .* failed.*no route") as info:
        W.download(tmp_path)
    assert "resumes" in str(info.value)


def test_download_detects_corrupt_result(tiny_official, tmp_path, monkeypatch):
    import huggingface_hub

    def corrupt(repo_id, filename, local_dir, force_download, **kwargs):
        target = Path(local_dir) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"z" * len(tiny_official[filename]))
        return str(target)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", corrupt)
    with pytest.raises(WeightsError, match="failed verification.*wrong hash"):
        W.download(tmp_path)


def test_resolve_accepts_official_checkout(tmp_path):
    (tmp_path / "pretrained_weights" / "liveportrait").mkdir(parents=True)
    assert W.resolve_weights_dir(tmp_path) == tmp_path / "pretrained_weights"
    assert W.resolve_weights_dir(tmp_path / "pretrained_weights") == tmp_path / "pretrained_weights"


def test_resolve_env_and_missing(tmp_path, monkeypatch):
    monkeypatch.setenv(W.ENV_WEIGHTS_DIR, str(tmp_path))
    assert W.default_weights_dir() == tmp_path
    with pytest.raises(WeightsError, match="does not exist"):
        W.resolve_weights_dir(tmp_path / "missing")
