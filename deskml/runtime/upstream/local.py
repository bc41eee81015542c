"""Which models this node answers itself: what the upstream router asks before it picks between here
and an upstream. Built from the registry and the service models, so the router needs no
InferenceService (which itself is built with the router)."""

from __future__ import annotations

from deskml.core.errors import DeskmlError
from deskml.runtime.registry import Registry
from deskml.runtime.service_models.tasks import ServiceTasks


class LocalModels:
    def __init__(self, registry: Registry, service_tasks: ServiceTasks | None, *, forward_only: bool = False) -> None:
        """`forward_only`: a node that only forwards (DESKML_FORWARD_ONLY) answers nothing itself."""
        self.registry = registry
        self.service_tasks = service_tasks
        self.forward_only = forward_only

    def serves(self, name: str, task: str) -> bool:
        """Whether this node answers `name` itself: a GGUF, or an embedding service model."""
        if self.forward_only:
            return False
        if task == "embed" and self.service_tasks is not None and self.service_tasks.serves_embedding(name):
            return True
        try:
            self.registry.get(name)
        except DeskmlError:
            return False
        return True

    def canonical(self, name: str) -> str:
        """The name deskml's alias rules give `name` (`smollm2` -> `smollm2:135m`), for matching upstreams."""
        return self.registry.canonical(name)
