"""Stitching (S) and eye/lip retargeting (R) MLPs."""

from __future__ import annotations

from torch import nn

from .config import StitchingConfig
from .layers import MLP


class RetargetingMLP(nn.Module):
    """One MLP; its layers live under ``mlp`` as in the official checkpoint."""

    def __init__(self, input_size: int, hidden_sizes: tuple[int, ...], output_size: int) -> None:
        super().__init__()
        self.mlp = MLP(input_size, hidden_sizes, output_size)

    def forward(self, x):  # (B,input_size) -> (B,output_size)
        return self.mlp(x)


class StitchingRetargeting(nn.Module):
    """The three MLPs of the official stitching/retargeting checkpoint.

    - ``stitching``: (B,126) = [x_s, x_d] flattened -> (B,65): 63 keypoint deltas + (tx, ty)
    - ``lip``: (B,65) = [x_s, c_lip_src, c_lip_target] -> (B,63)
    - ``eye``: (B,66) = [x_s, c_eye_left, c_eye_right, c_eye_target] -> (B,63)
    """

    # Checkpoint entry holding each MLP's state dict (official names).
    CHECKPOINT_KEYS: dict[str, str] = {
        "stitching": "retarget_shoulder",
        "lip": "retarget_mouth",
        "eye": "retarget_eye",
    }

    def __init__(self, cfg: StitchingConfig = StitchingConfig()) -> None:
        super().__init__()
        self.stitching = RetargetingMLP(cfg.stitching.input_size, cfg.stitching.hidden_sizes, cfg.stitching.output_size)
        self.lip = RetargetingMLP(cfg.lip.input_size, cfg.lip.hidden_sizes, cfg.lip.output_size)
        self.eye = RetargetingMLP(cfg.eye.input_size, cfg.eye.hidden_sizes, cfg.eye.output_size)
