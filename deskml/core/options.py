"""Ollama's request `options`: which are sampling, which load the model, and the defaults it samples with.

Pure functions over plain values, so the dialects can split options without importing the runtime.
"""

from __future__ import annotations

import logging
from typing import Any

from deskml.core.errors import BadRequest
from deskml.core.speculation import SpeculativeMode, speculative_mode
from deskml.core.types import SamplingOptions
from deskml.core.validate import sampling_options

log = logging.getLogger("deskml.runtime")

# Parameter name -> type, as Ollama's Options/Runner define them (Modelfile PARAMETER lines and `options`).
PARAMETER_TYPES: dict[str, type] = {
    "num_keep": int, "seed": int, "num_predict": int, "top_k": int, "top_p": float, "min_p": float,
    "typical_p": float, "repeat_last_n": int, "temperature": float, "repeat_penalty": float,
    "presence_penalty": float, "frequency_penalty": float, "penalize_newline": bool,
    "stop": list, "num_ctx": int, "num_batch": int, "num_gpu": int, "main_gpu": int,
    "use_mmap": bool, "num_thread": int, "mirostat": int, "mirostat_tau": float,
    "mirostat_eta": float, "tfs_z": float, "low_vram": bool, "f16_kv": bool, "vocab_only": bool,
    "use_mlock": bool, "numa": bool,
    "speculative": str,  # deskml extension: a SPECULATIVE_MODES name (modelfile.coerce_parameter checks it)
}

# Ollama's defaults (api/types.go DefaultOptions), so Ollama clients see familiar sampling.
DEFAULT_SAMPLING = SamplingOptions(
    temperature=0.8, top_k=40, top_p=0.9, min_p=0.0, typical_p=1.0, repeat_penalty=1.1,
    repeat_last_n=64, presence_penalty=0.0, frequency_penalty=0.0, num_predict=-1,
)
SAMPLING_FIELDS = frozenset(SamplingOptions.model_fields)


def split_options(options: dict[str, Any]) -> tuple[SamplingOptions, int | None, list[str]]:
    """Ollama `options` -> (sampling, num_ctx, names ignored). Unknown names are ignored, as Ollama does."""
    sampling: dict[str, Any] = {}
    num_ctx: int | None = None
    ignored: list[str] = []
    for name, value in options.items():
        if value is None:
            continue
        if name == "num_ctx":
            try:
                num_ctx = int(value)
            except (TypeError, ValueError, OverflowError):  # OverflowError: infinity
                raise BadRequest(f"option num_ctx must be an integer, not {value!r}", param="options.num_ctx") from None
            if num_ctx <= 0:
                raise BadRequest("option num_ctx must be positive", param="options.num_ctx")
        elif name in SAMPLING_FIELDS:
            sampling[name] = value
        else:
            if name not in PARAMETER_TYPES:
                log.debug("ignoring unknown option %s", name)
            ignored.append(name)
    if isinstance(sampling.get("stop"), str):
        sampling["stop"] = [sampling["stop"]]
    names = {field: f"options.{field}" for field in SAMPLING_FIELDS} | {"": "options"}
    return sampling_options(sampling, names), num_ctx, ignored


def gpu_options(options: dict[str, Any] | None) -> dict[str, int | None]:
    """Ollama's load options num_gpu (layers on GPUs, -1 = automatic) and main_gpu, checked."""
    found: dict[str, int | None] = {"num_gpu": None, "main_gpu": None}
    for name in found:
        value = (options or {}).get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
            raise BadRequest(f"option {name} must be an integer, not {value!r}", param=f"options.{name}")
        if not -1 <= int(value) <= 100_000:
            raise BadRequest(f"option {name} must be between -1 and 100000", param=f"options.{name}")
        found[name] = int(value)
    return found


def speculative_option(options: dict[str, Any] | None) -> SpeculativeMode | None:
    """deskml's `options.speculative` (a load option, like num_ctx), checked; None when absent."""
    return speculative_mode((options or {}).get("speculative"), "options.speculative")
