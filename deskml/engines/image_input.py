"""Decoding uploaded images for the vision engines (Pillow, imported by the engines that need it).

Anything that is not a readable image is a 400 naming the field; phone photos are turned upright
by their EXIF orientation first, so boxes match what the user sees.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from deskml.core.errors import BadRequest

MAX_PIXELS = 40_000_000  # refuse decompression bombs before decoding their pixels


def decode_rgb(data: bytes, field: str = "image", min_side: int | None = None) -> Image.Image:
    """The upload as an upright RGB image. With `min_side`, a JPEG is decoded at a reduced scale
    (libjpeg's DCT scaling) that still leaves both sides at least that long: a 12-megapixel phone
    photo bound for a 224-pixel classifier decodes in a fraction of the time."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_PIXELS:
                raise BadRequest(
                    f"'{field}' is {image.width}x{image.height} pixels, more than the {MAX_PIXELS} allowed",
                    param=field,
                )
            if min_side and image.format == "JPEG":
                image.draft("RGB", (min_side, min_side))
            image.load()
    except BadRequest:
        raise
    except UnidentifiedImageError as exc:
        raise BadRequest(f"'{field}' is not an image in a format deskml can read "
                         "(JPEG, PNG, WebP, GIF, BMP, TIFF)", param=field) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, OSError, SyntaxError, ValueError) as exc:
        raise BadRequest(f"'{field}' is a damaged or unreadable image: {exc}", param=field) from exc
    return ImageOps.exif_transpose(image).convert("RGB")


def rgb_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.uint8)
