"""The non-LLM models deskml knows how to serve, in order of preference per kind.

Each entry names the engine that serves it and the optional extra that brings its dependencies;
engines live in `deskml/engines/` and are imported only when a request needs them.
"""

from __future__ import annotations

from deskml.engines.spec import ServiceSpec
from deskml.runtime.service_models.listing import embedding_and_vision_specs


def service_specs() -> list[ServiceSpec]:
    specs: list[ServiceSpec] = []
    specs.extend(embedding_and_vision_specs())
    return specs
