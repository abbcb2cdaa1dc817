"""With --face-models mediapipe, the first-use download leaves out InsightFace's (non-commercial) models."""

from __future__ import annotations

import hashlib
from pathlib import Path

from lpstudio import weights as W


def test_download_without_insightface(monkeypatch, tmp_path: Path) -> None:
    contents = {"liveportrait/a.pth": b"alpha" * 10, "insightface/models/b.onnx": b"beta" * 7}
    fake = [W.OfficialFile(p, hashlib.sha256(c).hexdigest(), len(c)) for p, c in contents.items()]
    monkeypatch.setattr(W, "official_files", lambda: fake)
    monkeypatch.setattr(W, "probe_hub", lambda url, **kw: None)  # the hub counts as reachable
    calls: list[str] = []

    def fake_download(repo_id, filename, local_dir, force_download, **kwargs):
        calls.append(filename)
        target = Path(local_dir) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(contents[filename])
        return str(target)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    W.download(tmp_path, insightface=False)
    assert calls == ["liveportrait/a.pth"]
    assert not (tmp_path / "insightface").exists()
    assert [c.status for c in W.verify(tmp_path, insightface=False)] == ["ok"]
    assert {c.file.path: c.status for c in W.verify(tmp_path)}["insightface/models/b.onnx"] == "missing"
