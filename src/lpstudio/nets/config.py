"""Hyperparameters of the official LivePortrait human model, as frozen dataclasses.

The values are facts of the released checkpoints (official ``src/config/models.yaml``);
they are not meant to be edited. Each network module takes its config object.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AppearanceConfig:
    """Appearance feature extractor F: (B,3,256,256) image -> (B,32,16,64,64) feature volume."""

    image_channels: int = 3
    block_expansion: int = 64
    num_down_blocks: int = 2
    max_features: int = 512
    reshape_channels: int = 32
    reshape_depth: int = 16
    num_resblocks: int = 6


@dataclass(frozen=True)
class MotionConfig:
    """Motion extractor M: ConvNeXt-V2-tiny backbone with keypoint, pose, expression heads."""

    in_channels: int = 3
    depths: tuple[int, ...] = (3, 3, 9, 3)
    dims: tuple[int, ...] = (96, 192, 384, 768)
    num_kp: int = 21
    num_bins: int = 66
    """Head-pose bins: a bin is 3 degrees wide, bin 0 starts at -99 degrees."""


@dataclass(frozen=True)
class DenseMotionConfig:
    """Dense motion network inside W: 3D hourglass predicting masks and occlusion."""

    block_expansion: int = 32
    max_features: int = 1024
    num_blocks: int = 5
    reshape_depth: int = 16
    compress: int = 4
    kp_variance: float = 0.01
    """Variance of the Gaussian heatmaps around each keypoint (official constant)."""


@dataclass(frozen=True)
class WarpingConfig:
    """Warping module W: warps the feature volume from source to driving keypoints."""

    num_kp: int = 21
    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    reshape_channels: int = 32
    estimate_occlusion_map: bool = True
    dense_motion: DenseMotionConfig = field(default_factory=DenseMotionConfig)


@dataclass(frozen=True)
class DecoderConfig:
    """SPADE decoder G: (B,256,64,64) warped features -> (B,3,512,512) image in 0..1."""

    in_channels: int = 256
    middle_blocks: int = 6
    out_channels: int = 64
    upscale: int = 2
    spade_hidden: int = 128


@dataclass(frozen=True)
class MLPConfig:
    """One stitching/retargeting MLP: Linear+ReLU hidden layers, then a Linear output."""

    input_size: int
    hidden_sizes: tuple[int, ...]
    output_size: int


@dataclass(frozen=True)
class StitchingConfig:
    """The three MLPs of the stitching and retargeting module (S, R_eye, R_lip)."""

    stitching: MLPConfig = MLPConfig(126, (128, 128, 64), 65)  # (x_s, x_d) -> 63 + (tx, ty)
    lip: MLPConfig = MLPConfig(65, (128, 128, 64), 63)  # (x_s, [c_src, c_target]) -> 63
    eye: MLPConfig = MLPConfig(66, (256, 256, 128, 128, 64), 63)  # (x_s, [l, r, target]) -> 63


@dataclass(frozen=True)
class ModelConfig:
    """All hyperparameters of the human model, plus the sizes the pipeline relies on."""

    appearance: AppearanceConfig = field(default_factory=AppearanceConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    warping: WarpingConfig = field(default_factory=WarpingConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    stitching: StitchingConfig = field(default_factory=StitchingConfig)
    input_size: int = 256
    output_size: int = 512


DEFAULT_CONFIG = ModelConfig()
