"""scripts/gpu_check.sh on a machine without CUDA: one clear line, a non-zero exit, nothing else run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"
NO_CUDA_EXIT = 2
"""The script's exit status when torch sees no CUDA device."""
RUN_TIMEOUT_S = 120
"""Importing torch on a loaded 2-core machine takes seconds; this only stops a hung run."""

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def test_the_script_parses() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True, timeout=RUN_TIMEOUT_S)


def test_without_cuda_it_says_so_in_one_line_and_exits_non_zero(tmp_path: Path) -> None:
    result = tmp_path / "out" / "gpu_check.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable}  # hide any GPU this machine has
    proc = subprocess.run(
        ["bash", str(SCRIPT), str(result)], env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    assert proc.returncode == NO_CUDA_EXIT
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: no CUDA device"), proc.stderr
    report = json.loads(result.read_text())
    assert report["ok"] is False
    assert [s["name"] for s in report["steps"]] == ["cuda"]  # the GPU steps never started
    assert report["steps"][0]["exit_code"] != 0
