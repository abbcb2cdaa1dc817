"""The five LivePortrait networks, as PyTorch modules with the official parameter names.

This package is the model definition and nothing else: it knows no engine, server,
command line, expressions or driving (a test keeps it that way). Each network has
its own module, and their sizes are frozen dataclasses in :mod:`.config`:

======================  ====================================  ===============================================
module                  official name                         shapes
======================  ====================================  ===============================================
:mod:`.appearance`      ``appearance_feature_extractor`` (F)  image (B,3,256,256) -> volume (B,32,16,64,64)
:mod:`.motion_extractor` ``motion_extractor`` (M)             image (B,3,256,256) -> pose bins, t, exp, scale, kp
:mod:`.warping`         ``warping_module`` (W)                volume + keypoints (B,21,3) -> features (B,256,64,64)
:mod:`.decoder`         ``spade_generator`` (G)               (B,256,64,64) -> image (B,3,512,512)
:mod:`.stitching`       ``stitching_retargeting_module``      stitching and eye/lip retargeting MLPs
======================  ====================================  ===============================================

:class:`Networks` bundles them; :meth:`Networks.load_official` loads official state
dicts (after :mod:`lpstudio.checkpoint` has mapped their keys) with a strict load.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ..checkpoint import load_state_dict_strict, split_stitching_checkpoint
from .appearance import AppearanceFeatureExtractor
from .config import DEFAULT_CONFIG, ModelConfig
from .decoder import SPADEDecoder
from .motion_extractor import MotionExtractor, MotionOutput
from .stitching import StitchingRetargeting
from .warping import WarpingNetwork, WarpOutput

__all__ = [
    "DEFAULT_CONFIG",
    "AppearanceFeatureExtractor",
    "ModelConfig",
    "MotionExtractor",
    "MotionOutput",
    "Networks",
    "SPADEDecoder",
    "StitchingRetargeting",
    "WarpOutput",
    "WarpingNetwork",
]


class Networks(nn.Module):
    """The five official networks, with our names (``appearance``, ``motion``, ``warping``, ``decoder``,
    ``stitching``)."""

    def __init__(self, cfg: ModelConfig = DEFAULT_CONFIG) -> None:
        super().__init__()
        self.appearance = AppearanceFeatureExtractor(cfg.appearance)
        self.motion = MotionExtractor(cfg.motion)
        self.warping = WarpingNetwork(cfg.warping)
        self.decoder = SPADEDecoder(cfg.decoder)
        self.stitching = StitchingRetargeting(cfg.stitching)

    def by_official_name(self) -> dict[str, nn.Module]:
        """Official module name (the keys of ``lpstudio.checkpoint.MODULE_FILES``) -> our submodule."""
        return {
            "appearance_feature_extractor": self.appearance,
            "motion_extractor": self.motion,
            "warping_module": self.warping,
            "spade_generator": self.decoder,
            "stitching_retargeting_module": self.stitching,
        }

    def load_official(
        self, checkpoints: Mapping[str, Mapping[str, Any]], sources: Mapping[str, str] | None = None
    ) -> None:
        """Load official state dicts, keyed by official module name; ``sources`` name their files in errors."""
        sources = sources or {}
        for name, module in self.by_official_name().items():
            obj = checkpoints[name]
            source = sources.get(name, name)
            if name == "stitching_retargeting_module":
                for part, sd in split_stitching_checkpoint(obj, source).items():
                    load_state_dict_strict(getattr(module, part), sd, f"{source} [{part}]")
            else:
                load_state_dict_strict(module, obj, source)
