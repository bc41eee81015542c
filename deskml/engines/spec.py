"""What a non-LLM model is (`ServiceSpec`) and what its engine provides (`ServiceEngine`).

A spec names a model, its kind, and the engine class that serves it as "module:Class", imported
only when the model loads (by `runtime.service_models.manager.ServiceManager`), so an optional extra that is not
installed costs nothing until a request needs it, and then gives a 501 naming the install command.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from deskml.core.extras import install_command

ServiceKind = Literal[
    "embedding", "rerank", "classify", "ocr", "detect", "asr", "tts", "image", "style", "text-classify"
]


class ServiceEngine(Protocol):
    """What every non-LLM engine provides; task methods (embed, classify, ...) are per kind."""

    def load(self) -> None: ...

    def close(self) -> None: ...


def importable(module: str) -> bool:
    """Whether `module` can be imported here, without importing it."""
    if sys.modules.get(module) is not None:
        # Already imported; some (cv2) then have __spec__ = None, on which find_spec raises ValueError.
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@dataclass
class ServiceSpec:
    name: str
    kind: ServiceKind
    engine: str  # "package.module:ClassName", constructed as Class(spec)
    extra: str  # pip extra that provides its dependencies, e.g. "vision"
    requires: list[str] = field(default_factory=list)  # importable modules that must exist
    aliases: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)  # engine-specific settings
    capabilities: list[str] = field(default_factory=list)
    family: str = ""
    license: str = ""
    description: str = ""
    # Extra check beyond importable modules (e.g. weights package present); None = always true.
    present: Callable[[ServiceSpec], bool] | None = None
    # The whole install command when the extra alone is not enough (e.g. a --no-deps weights package).
    install: str = ""

    @property
    def install_command(self) -> str:
        return self.install or install_command(self.extra)

    def missing(self) -> list[str]:
        return [m for m in self.requires if not importable(m)]

    def available(self) -> bool:
        if self.missing():
            return False
        return self.present(self) if self.present is not None else True
