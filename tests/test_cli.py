"""The command line: `lpstudio edit` end to end on synthetic weights, and its errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from lpstudio.cli import main

SAMPLE = "src/lpstudio/assets/astronaut.png"


@pytest.fixture(scope="module")
def sample(request):
    return request.config.rootpath / SAMPLE


def test_edit_no_crop_writes_png(sample, synthetic_weights_dir, tmp_path):
    out = tmp_path / "out.png"
    rc = main(["edit", str(sample), "--no-crop", "--set", "smile=1", "--set", "head_yaw=10", "-o", str(out),
               "--weights-dir", str(synthetic_weights_dir), "--device", "cpu"])  # fmt: skip
    assert rc == 0
    image = np.asarray(Image.open(out))
    assert image.shape == (512, 512, 3) and image.dtype == np.uint8
    assert image.std() > 5, "output looks blank"


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--set", "smiel=1"], "unknown parameter 'smiel'"),
        (["--set", "wink=99"], "outside its range 0 .. 39"),
        (["--set", "smile=nan"], "finite number"),
        (["--set", "smile"], "name=value"),
    ],
)
def test_edit_bad_parameters(sample, tmp_path, capsys, args, expected):
    rc = main(["edit", str(sample), "--no-crop", "-o", str(tmp_path / "o.png"), *args])
    assert rc == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


def test_edit_missing_weights_names_download_command(sample, tmp_path, capsys):
    rc = main(["edit", str(sample), "--no-crop", "-o", str(tmp_path / "o.png"), "--weights-dir", str(tmp_path)])
    assert rc == 3
    err = capsys.readouterr().err
    assert "appearance_feature_extractor.pth" in err and "lpstudio weights download" in err


def test_edit_unreadable_image(tmp_path, capsys):
    bad = tmp_path / "photo.jpg"
    bad.write_text("not an image")
    rc = main(["edit", str(bad), "--no-crop", "-o", str(tmp_path / "o.png")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "photo.jpg" in err and "is not an image file" in err


def test_edit_bad_output_extension(sample, tmp_path, capsys):
    rc = main(["edit", str(sample), "--no-crop", "-o", str(tmp_path / "o.txt")])
    assert rc == 2
    assert "unsupported extension .txt" in capsys.readouterr().err


def test_console_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "lpstudio", "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    assert "edit" in proc.stdout and "weights" in proc.stdout
