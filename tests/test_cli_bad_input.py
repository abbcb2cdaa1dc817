"""Bad input on the command line: each gets a one-line error (no traceback) and a non-zero exit code.

Everything here fails before a model is loaded, or while reading the weights, so it runs in seconds.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import bad_inputs as bad
from lpstudio.checkpoint import MODULE_FILES
from lpstudio.cli import main

ROOT = Path(__file__).resolve().parents[1]


class _Payload:
    """Unpickling this runs ``os.mkdir(marker)``: proof that a loader executed pickled code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    out = {
        "good": tmp_path / "good.png",
        "corrupt": tmp_path / "corrupt.png",
        "truncated": tmp_path / "truncated.png",
        "bomb": tmp_path / "bomb.png",
        "empty": tmp_path / "empty.jpg",
        "pdf": tmp_path / "doc.jpg",
    }
    out["good"].write_bytes(bad.png(bad.photo(0, 96)))
    out["corrupt"].write_bytes(b"not an image at all")
    out["truncated"].write_bytes(bad.truncated_png())
    out["bomb"].write_bytes(bad.bomb_png())
    out["empty"].write_bytes(b"")
    out["pdf"].write_bytes(bad.PDF)
    return out


def _weights(tmp_path: Path, content: bytes) -> Path:
    root = tmp_path / "weights"
    for rel in MODULE_FILES.values():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)
    return root


def _check(capsys, rc: int, expected_rc: int, *needles: str) -> str:
    out = capsys.readouterr().err.strip()
    assert rc == expected_rc, out
    assert "Traceback" not in out
    err = out.splitlines()[-1]  # progress lines ("loading the model...") may come first
    assert err.startswith("lpstudio ") and ": error: " in err and out.count(": error: ") == 1, out
    for needle in needles:
        assert needle in err, (needle, err)
    return err


OUT = "out.png"


@pytest.mark.parametrize(
    "argv,rc,needles",
    [
        (["say", "smile=300:99999999", "--dry-run"], 2, ["the limit is 600 s"]),
        (["say", "smile=300:0; wait 99999999", "--dry-run"], 2, ["the limit is 600 s"]),
        (["say", "; ".join(["blink x10 @4"] * 30), "--dry-run"], 2, ["the limit is 256"]),
        (["say", "smile " * 120, "--dry-run"], 2, ["characters"]),
        (["say", "smile=300:" + "9" * 400, "--dry-run"], 2, ["finite"]),
        (["say", "qwzx", "--dry-run"], 2, ["cannot understand"]),
        (["say", "\udcff\udcfe", "--dry-run"], 2, ["error"]),  # non-UTF-8 bytes in argv
        (["say", "smile*99=300:100", "--dry-run"], 2, ["intensity"]),
        (["edit", "{good}", "--no-crop", "-o", "{out}", "--set", "smile=nan"], 2, ["finite number"]),
        (["edit", "{good}", "--no-crop", "-o", "{out}", "--set", "smile=inf"], 2, ["smile"]),
        (["edit", "{good}", "--no-crop", "-o", "{out}", "--set", "wink=99"], 2, ["outside its range"]),
        (["edit", "{good}", "--no-crop", "-o", "{out}", "--set", "smiel=1"], 2, ["unknown parameter"]),
        (["edit", "{corrupt}", "--no-crop", "-o", "{out}"], 2, ["corrupt.png", "not an image"]),
        (["edit", "{truncated}", "--no-crop", "-o", "{out}"], 2, ["truncated.png"]),
        (["edit", "{bomb}", "--no-crop", "-o", "{out}"], 2, ["bomb.png", "too large"]),
        (["edit", "{empty}", "--no-crop", "-o", "{out}"], 2, ["empty"]),
        (["edit", "{pdf}", "--no-crop", "-o", "{out}"], 2, ["PDF"]),
        (["edit", "{tmp}/missing.png", "--no-crop", "-o", "{out}"], 2, ["does not exist"]),
        (["animate", "{good}", "smile=300:99999999", "-o", "{tmp}/o.mp4", "--no-crop"], 2, ["limit"]),
        (["serve", "--max-sessions", "0"], 2, ["max_sessions"]),
        (["serve", "--max-clip-seconds", "nan"], 2, ["max_clip_ms"]),
        (["serve", "--source", "{corrupt}"], 2, ["corrupt.png"]),
        (["serve", "--engine-factory", "no_such_module:make"], 2, ["cannot import"]),
        (["drive", "{good}", "{tmp}/missing.mp4", "-o", "{tmp}/o.mp4"], 2, ["no such file"]),
    ],
    ids=lambda v: v if isinstance(v, int) else None,
)
def test_cli_bad_input_is_one_line(argv, rc, needles, files, tmp_path, capsys):
    values = {k: str(v) for k, v in files.items()} | {"out": str(tmp_path / OUT), "tmp": str(tmp_path)}
    code = main([a.format(**values) if a.startswith("{") else a for a in argv])
    _check(capsys, code, rc, *needles)


def test_corrupt_weights_file(files, tmp_path, capsys):
    root = _weights(tmp_path, b"\x00garbage, not a checkpoint")
    code = main(["edit", str(files["good"]), "--no-crop", "-o", str(tmp_path / OUT), "--weights-dir", str(root)])
    _check(capsys, code, 3, "appearance_feature_extractor.pth")


def test_malicious_weights_pickle_is_refused_and_never_runs(files, tmp_path, capsys):
    marker = tmp_path / "pwned-weights"
    root = _weights(tmp_path, pickle.dumps({"state_dict": _Payload(marker)}))
    code = main(["edit", str(files["good"]), "--no-crop", "-o", str(tmp_path / OUT), "--weights-dir", str(root)])
    _check(capsys, code, 3, "appearance_feature_extractor.pth")
    assert not marker.exists(), "the pickled payload ran"


def test_malicious_template_pickle_is_refused_and_never_runs(files, tmp_path, capsys):
    marker = tmp_path / "pwned-template"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"motion": [_Payload(marker)]}))
    code = main(["drive", str(files["good"]), str(evil), "-o", str(tmp_path / "o.mp4")])
    _check(capsys, code, 2, "evil.pkl", "refused")
    assert not marker.exists(), "the pickled payload ran"


def test_truncated_video(files, tmp_path, capsys):
    import numpy as np

    from lpstudio.video_writer import VideoWriter

    full = tmp_path / "full.mp4"
    with VideoWriter(str(full), 10.0, "mp4") as writer:
        for i in range(6):
            writer.write(np.full((64, 64, 3), 20 * i, np.uint8))
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(full.read_bytes()[:600])
    code = main(["drive", str(files["good"]), str(truncated), "-o", str(tmp_path / "o.mp4")])
    _check(capsys, code, 2, "truncated.mp4")


def test_errors_from_a_real_process_are_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "lpstudio", "say", "smile=300:99999999", "--dry-run"],
        capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "limit" in proc.stderr
