"""Text-to-image with diffusers pipelines stored in a local directory (`save_pretrained` layout).

Any Stable Diffusion-family pipeline that `DiffusionPipeline.from_pretrained` can read works: SD 1.5,
SD 2.x, SDXL, SD-Turbo/SDXL-Turbo. The class comes from the directory's `model_index.json`.
Defaults (size, steps, guidance) come from the model: its UNet's sample size times the VAE scale
factor, and a `deskml.json` file in the directory may set `steps`, `guidance_scale`, `width`,
`height` (a Turbo model wants `{"steps": 1, "guidance_scale": 0.0}`; a directory whose name
contains "turbo" gets that without the file). One generation at a time per pipeline: a
scheduler keeps per-run state.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from diffusers import DiffusionPipeline
from diffusers.utils import logging as diffusers_logging

from deskml.core.errors import BadRequest, ModelLoadError
from deskml.core.media import ImageDone, ImageRequest
from deskml.engines.devices import torch_device
from deskml.engines.images_io import encode_image
from deskml.engines.spec import ServiceSpec

log = logging.getLogger("deskml.engines.diffusers")

MAX_SIDE = 2048
MAX_STEPS = 150


class Cancelled(Exception):
    """The client went away; the pipeline was interrupted."""


def read_defaults(path: Path) -> dict[str, Any]:
    defaults: dict[str, Any] = {}
    if "turbo" in path.name.lower():
        defaults.update(steps=1, guidance_scale=0.0)
    extra = path / "deskml.json"
    if extra.is_file():
        try:
            data = json.loads(extra.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{extra} is not valid JSON: {exc}") from exc
        defaults.update({k: data[k] for k in ("steps", "guidance_scale", "width", "height") if k in data})
    return defaults


class DiffusersEngine:
    def __init__(self, spec: ServiceSpec) -> None:
        self.spec = spec
        self.path = Path(spec.options["path"])
        self.pipe: Any = None
        self.defaults: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.gpu_services = "auto"  # DESKML_GPU_SERVICES, set by the service manager
        self.device = "cpu"

    def load(self) -> None:
        diffusers_logging.disable_progress_bar()  # per-component load bars would flood the server log
        self.device = torch_device(torch, self.spec.kind, self.gpu_services)
        # fp16 halves a pipeline's memory and is how these models run on CUDA; CPU and MPS keep fp32,
        # where half precision is slow (CPU) or gives black images with some VAEs (MPS)
        dtype = torch.float16 if self.device == "cuda" else torch.float32
        pipe = DiffusionPipeline.from_pretrained(str(self.path), dtype=dtype, local_files_only=True)
        pipe.set_progress_bar_config(disable=True)
        try:
            self.pipe = pipe.to(self.device)
        except Exception as exc:  # out of device memory: the CPU, in float32, still works
            if self.device == "cpu":
                raise
            log.warning("%s could not move to %s (%s); running on the CPU", self.spec.name, self.device, exc)
            self.device = "cpu"
            pipe = DiffusionPipeline.from_pretrained(str(self.path), dtype=torch.float32, local_files_only=True)
            pipe.set_progress_bar_config(disable=True)
            self.pipe = pipe.to("cpu")
        unet = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
        if unet is None:  # every text-to-image pipeline has a denoiser, whose config gives the native size
            raise ModelLoadError(f"{self.path} is no text-to-image pipeline: it has neither a unet nor a transformer")
        native = int(getattr(unet.config, "sample_size", 64)) * int(getattr(pipe, "vae_scale_factor", 8))
        self.defaults = {"width": native, "height": native, "steps": 25, "guidance_scale": 7.5}
        self.defaults.update(read_defaults(self.path))

    def close(self) -> None:
        self.pipe = None

    def resolve(self, req: ImageRequest) -> tuple[int, int, int, float]:
        width = req.width or int(self.defaults["width"])
        height = req.height or int(self.defaults["height"])
        for name, value in (("width", width), ("height", height)):
            if value % 8 or not 8 <= value <= MAX_SIDE:
                raise BadRequest(f"{name} must be a multiple of 8 between 8 and {MAX_SIDE}, got {value}", param=name)
        steps = req.steps if req.steps is not None else int(self.defaults["steps"])
        if not 1 <= steps <= MAX_STEPS:
            raise BadRequest(f"steps must be between 1 and {MAX_STEPS}, got {steps}", param="steps")
        guidance = req.guidance_scale if req.guidance_scale is not None else float(self.defaults["guidance_scale"])
        return width, height, steps, guidance

    def generate(self, req: ImageRequest, progress: Callable[[int, int], None],
                 cancel: threading.Event) -> ImageDone:
        if self.pipe is None:
            raise ModelLoadError(f"{self.spec.name} is not loaded")
        width, height, steps, guidance = self.resolve(req)
        base_seed = req.seed if req.seed is not None else secrets.randbelow(2**31)
        total = steps * req.n
        started = time.perf_counter_ns()
        images: list[bytes] = []
        seeds: list[int] = []
        with self._lock:
            for index in range(req.n):
                seed = (base_seed + index) % 2**63
                done_before = index * steps

                def on_step(pipe: Any, step: int, _timestep: Any, kwargs: dict[str, Any],
                            done_before: int = done_before) -> dict[str, Any]:
                    progress(done_before + step + 1, total)
                    if cancel.is_set():
                        pipe._interrupt = True  # diffusers checks this flag before each step
                    return kwargs

                generator = torch.Generator("cpu").manual_seed(seed)
                with torch.inference_mode():
                    result = self.pipe(
                        prompt=req.prompt, negative_prompt=req.negative_prompt or None, width=width, height=height,
                        num_inference_steps=steps, guidance_scale=guidance, generator=generator,
                        callback_on_step_end=on_step, num_images_per_prompt=1,
                    )
                if cancel.is_set():
                    raise Cancelled()
                images.append(encode_image(result.images[0], req.format))
                seeds.append(seed)
        return ImageDone(model=self.spec.name, images=images, seeds=seeds, width=width, height=height, steps=steps,
                         format=req.format, total_ns=time.perf_counter_ns() - started)
