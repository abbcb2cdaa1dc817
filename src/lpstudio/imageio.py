"""Reading and writing still images for the CLI and the app."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError


@dataclass(frozen=True)
class LoadedImage:
    rgb: np.ndarray  # (H,W,3) uint8, EXIF orientation applied
    source: str


def load_image(path: str | Path) -> LoadedImage:
    """Read an image file as RGB uint8 with its EXIF orientation applied."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"image not found: {path}", hint="check the path")
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                white = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(white, im)
            rgb = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageError(f"cannot read {path} as an image ({exc})", hint="use a PNG, JPEG or WebP photo") from None
    return LoadedImage(np.ascontiguousarray(rgb), str(path))


def save_image(path: str | Path, rgb: np.ndarray) -> None:
    """Write an (H,W,3) uint8 RGB array; the format follows the extension."""
    path = Path(path)
    try:
        Image.fromarray(rgb).save(path, **({"quality": 95} if path.suffix.lower() in (".jpg", ".jpeg") else {}))
    except (OSError, ValueError) as exc:
        raise ImageError(f"cannot write {path} ({exc})", hint="check the folder exists and is writable") from None
