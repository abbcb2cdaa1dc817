"""Reading and writing still images for the CLI and the app.

Reading is the face pipeline's intake (EXIF orientation, alpha, 16-bit, palette
and size checks, clear errors); this module adds writing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .errors import ImageError
from .face.intake import LoadedImage, load_image

__all__ = ["LoadedImage", "load_image", "save_image"]

JPEG_QUALITY = 95


def save_image(path: str | Path, rgb: np.ndarray) -> None:
    """Write an (H,W,3) uint8 RGB array; the format follows the extension."""
    path = Path(path)
    options = {"quality": JPEG_QUALITY} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    try:
        Image.fromarray(rgb).save(path, **options)
    except (OSError, ValueError) as exc:
        raise ImageError(f"cannot write {path} ({exc})", hint="check the folder exists and is writable") from None
