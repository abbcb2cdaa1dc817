"""Reading and writing still images for the CLI and the app.

Reading is the face pipeline's intake (EXIF orientation, alpha, 16-bit, palette
and size checks, clear errors); this module adds writing, which goes to a partial file
beside the target and replaces it only when complete (:mod:`lpstudio.atomic`), so a
failed or interrupted save leaves an earlier image at that path as it was.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from .atomic import atomic_output
from .errors import ImageError
from .face.intake import LoadedImage, load_image

__all__ = ["LoadedImage", "load_image", "save_image"]

JPEG_QUALITY = 95

_log = logging.getLogger(__name__)


def save_image(path: str | Path, rgb: np.ndarray) -> None:
    """Write an (H,W,3) uint8 RGB array; the format follows the extension.

    The image replaces ``path`` only once it is completely written; on any failure ``path`` is untouched.
    """
    path = Path(path)
    format_name = Image.registered_extensions().get(path.suffix.lower())
    if format_name is None:
        raise ImageError(
            f"cannot write {path}: unknown image extension {path.suffix or '(none)'}", hint="use .png, .jpg or .webp"
        )
    options = {"quality": JPEG_QUALITY} if format_name == "JPEG" else {}
    try:
        image = Image.fromarray(rgb)
        with atomic_output(path, error=ImageError) as partial:
            image.save(partial, format=format_name, **options)
    except (OSError, ValueError, TypeError) as exc:
        _log.warning("cannot write %s: %s", path, exc)  # Pillow's words stay in the log
        raise ImageError(
            f"cannot write {path}: the image could not be encoded as {format_name} or stored",
            hint="check the folder exists, is writable and has space; or try a .png name",
        ) from None
