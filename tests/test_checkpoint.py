"""Checkpoint loading: key mapping against the official manifest and every failure message."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from lpstudio.checkpoint import (
    MODULE_FILES,
    checkpoint_filter_fn,
    fold_spectral_norm,
    load_state_dict_strict,
    read_checkpoint,
)
from lpstudio.engine import load_model
from lpstudio.errors import WeightsError
from lpstudio.nets import Networks
from lpstudio.nets.appearance import AppearanceFeatureExtractor
from lpstudio.synthetic import official_manifest, synthetic_state_dict


def _official_to_ours(keys: dict[str, list[int]]) -> dict[str, tuple[int, ...]]:
    """Manifest keys mapped through the filter (shapes of folded weights come from weight_orig)."""
    fake = {k: torch.zeros(v) for k, v in keys.items() if not k.endswith(("weight_u", "weight_v"))}
    for k, v in keys.items():
        if k.endswith(("weight_u", "weight_v")):
            fake[k] = torch.ones(v)
    return {k: tuple(t.shape) for k, t in checkpoint_filter_fn(fake).items()}


@pytest.mark.parametrize(
    "official,ours",
    [
        ("appearance_feature_extractor", "appearance"),
        ("motion_extractor", "motion"),
        ("warping_module", "warping"),
        ("spade_generator", "decoder"),
        ("stitching_retargeting_module.stitching", "stitching.stitching"),
        ("stitching_retargeting_module.lip", "stitching.lip"),
        ("stitching_retargeting_module.eye", "stitching.eye"),
    ],
)
def test_model_keys_match_manifest(official, ours):
    module = Networks().get_submodule(ours)
    expected = _official_to_ours(official_manifest()[official])
    actual = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    assert actual == expected


def test_spectral_norm_folding_matches_torch():
    torch.manual_seed(0)
    conv = torch.nn.utils.spectral_norm(torch.nn.Conv2d(8, 4, 3))
    conv.train()
    for _ in range(5):  # let u, v converge a little, as trained weights have
        conv(torch.randn(1, 8, 5, 5))
    conv.eval()
    with torch.no_grad():
        conv(torch.randn(1, 8, 5, 5))  # eval mode: weight = weight_orig / sigma(u, v), no power iteration
    ref = conv.weight.detach().clone()
    folded = fold_spectral_norm({k: v.detach() for k, v in conv.state_dict().items()})
    assert set(folded) == {"weight", "bias"}
    torch.testing.assert_close(folded["weight"], ref, rtol=1e-6, atol=1e-7)


def test_loads_module_prefix_and_legacy_scalar():
    sd = synthetic_state_dict("appearance_feature_extractor", seed=3)
    prefixed = {"module." + k: (v.reshape(1) if v.dim() == 0 else v) for k, v in sd.items()}
    model = AppearanceFeatureExtractor()
    load_state_dict_strict(model, prefixed, "test")
    torch.testing.assert_close(model.first.conv.weight, sd["first.conv.weight"])


def test_missing_and_unexpected_keys_are_listed():
    sd = synthetic_state_dict("appearance_feature_extractor", seed=3)
    del sd["second.weight"]
    sd["extra.layer.weight"] = torch.zeros(3)
    with pytest.raises(WeightsError) as info:
        load_state_dict_strict(AppearanceFeatureExtractor(), sd, "appearance_feature_extractor.pth")
    msg = str(info.value)
    assert "appearance_feature_extractor.pth" in msg
    assert "missing keys: second.weight" in msg
    assert "unexpected keys: extra.layer.weight" in msg
    assert "lpstudio weights download" in msg


def test_wrong_shape_is_reported():
    sd = synthetic_state_dict("appearance_feature_extractor", seed=3)
    sd["second.bias"] = torch.zeros(7)
    with pytest.raises(WeightsError, match=r"wrong shape: second.bias \(7,\) \(expected \(512,\)\)"):
        load_state_dict_strict(AppearanceFeatureExtractor(), sd, "f.pth")


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="weight file not found") as info:
        read_checkpoint(tmp_path / "nope.pth")
    assert "lpstudio weights download" in str(info.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    with pytest.raises(WeightsError, match="is empty"):
        read_checkpoint(path)


def test_truncated_file(tmp_path):
    path = tmp_path / "full.pth"
    torch.save(synthetic_state_dict("stitching_retargeting_module.lip", seed=1), path)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(WeightsError, match="truncated or not a PyTorch checkpoint"):
        read_checkpoint(cut)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("this is a text file, not weights\n")
    with pytest.raises(WeightsError, match=r"notes.pth.*truncated or not a PyTorch checkpoint"):
        read_checkpoint(path)


class _Evil:
    def __reduce__(self):  # would run code when unpickled
        return (print, ("pwned",))


def test_pickle_with_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"weight": _Evil()}, path)
    with pytest.raises(WeightsError, match="refused to load") as info:
        read_checkpoint(path)
    assert "evil.pth" in str(info.value)
    assert "pwned" not in capsys.readouterr().out


def test_raw_pickle_is_refused(tmp_path):
    path = tmp_path / "raw.pth"
    path.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(WeightsError):
        read_checkpoint(path)


def test_non_dict_checkpoint(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(WeightsError, match="holds a list, not a state dict"):
        read_checkpoint(path)


def test_stitching_file_without_expected_entries(tmp_path, synthetic_weights_dir):
    # A copy of the synthetic folder whose stitching file lacks retarget_eye.
    root = tmp_path / "w"
    for rel in MODULE_FILES.values():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(Path(synthetic_weights_dir) / rel)
    stitch = root / MODULE_FILES["stitching_retargeting_module"]
    obj = torch.load(stitch, weights_only=True)
    del obj["retarget_eye"]
    stitch.unlink()
    torch.save(obj, stitch)
    with pytest.raises(WeightsError, match="no 'retarget_eye' entry"):
        load_model(root, device="cpu")


def test_load_model_missing_file_names_it(tmp_path, synthetic_weights_dir):
    root = tmp_path / "w"
    for name, rel in MODULE_FILES.items():
        if name == "warping_module":
            continue
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(Path(synthetic_weights_dir) / rel)
    with pytest.raises(WeightsError, match=r"warping_module.pth") as info:
        load_model(root, device="cpu")
    assert "lpstudio weights download" in str(info.value)
