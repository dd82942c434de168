"""Picture files as the detector takes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def read_image(path: Path) -> Any:
    """A picture file as an HxWx3 uint8 RGB array, turned upright by its EXIF orientation.

    Raises OSError if it cannot be read, ValueError if it is not a picture.
    """
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            upright = ImageOps.exif_transpose(im)
            return np.asarray(upright.convert("RGB"))
    except UnidentifiedImageError:
        raise ValueError(f"{path}: not a picture (JPEG, PNG, ...)") from None
