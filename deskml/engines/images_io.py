"""Reading uploaded pictures and writing results with Pillow (shared by the image engines)."""

from __future__ import annotations

import io
import warnings
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from deskml.core.errors import BadRequest

MAX_PIXELS = 40_000_000  # refuse decompression bombs before decoding them


def open_image(data: bytes, field: str) -> Image.Image:
    """Decode an upload; anything Pillow cannot read (or too many pixels) is a 400 naming the field."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_PIXELS:
                raise BadRequest(f"'{field}' is {image.width}x{image.height}: more than {MAX_PIXELS} pixels",
                                 param=field)
            image.load()
    except UnidentifiedImageError as exc:
        raise BadRequest(f"'{field}' is not an image (no format Pillow reads matches its bytes)", param=field) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, OSError, SyntaxError, ValueError) as exc:
        raise BadRequest(f"'{field}' is not a readable image ({exc})", param=field) from exc
    return ImageOps.exif_transpose(image)


def encode_image(image: Any, fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "jpeg":
        image.convert("RGB").save(out, format="JPEG", quality=92)
    else:
        image.save(out, format=fmt.upper())
    return out.getvalue()
