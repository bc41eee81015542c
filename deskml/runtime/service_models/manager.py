"""Non-LLM model services (embeddings, vision, speech, images): their lifecycle.

`ServiceManager` loads each model (a `ServiceSpec`, `deskml/engines/spec.py`) once on first use, keeps
it for `keep_alive`, unloads idle ones, and runs blocking engine calls in worker threads.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from deskml.core.durations import KEPT_FOREVER, expiry_at
from deskml.core.errors import ModelLoadError, ModelNotFound, NotImplementedFeature
from deskml.engines.spec import ServiceKind
from deskml.engines.spec import ServiceSpec as ServiceSpec  # re-exported: routes name it through runtime
from deskml.runtime import names
from deskml.runtime.reaper import Reaper

log = logging.getLogger("deskml.runtime.service_models.manager")

T = TypeVar("T")


@dataclass
class LoadedService:
    spec: ServiceSpec
    engine: Any
    load_seconds: float
    last_used: float = field(default_factory=time.monotonic)
    # A request's keep_alive (seconds; <0 forever, 0 unload when idle) outlives it, as in Ollama;
    # None until a request sets one: the server's DESKML_KEEP_ALIVE applies.
    keep_alive: float | None = None
    active: int = 0


class ServiceManager:
    def __init__(self, specs: list[ServiceSpec], keep_alive: float, workers: int = 4,
                 gpu_services: str = "auto") -> None:
        self.specs = specs
        self.gpu_services = gpu_services  # DESKML_GPU_SERVICES, read by engines that can use a GPU
        self.keep_alive = keep_alive
        self._loaded: dict[str, LoadedService] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="service")
        # Polled at least every second: a request's keep_alive or the end of a call moves an expiry
        # without waking it, as a wake-up between loading and running could unload a keep_alive 0 model.
        self._reaper = Reaper(self._reap, name="deskml-service-keepalive", max_wait=1.0)

    # lookup ------------------------------------------------------------------------------
    def find(self, name: str, kind: ServiceKind | None = None) -> ServiceSpec | None:
        try:
            wanted = names.normalize(name)
        except Exception:
            return None
        for spec in self.specs:
            if kind is not None and spec.kind != kind:
                continue
            if wanted == names.normalize(spec.name) or wanted in {names.normalize(a) for a in spec.aliases}:
                return spec
        return None

    def default(self, kind: ServiceKind) -> ServiceSpec | None:
        """The first available model of a kind (specs are listed in order of preference)."""
        for spec in self.specs:
            if spec.kind == kind and spec.available():
                return spec
        return None

    def get_spec(self, name: str | None, kind: ServiceKind) -> ServiceSpec:
        spec = self.find(name, kind) if name else self.default(kind)
        if spec is None:
            if name:
                raise ModelNotFound(name)
            hint = next((s.install_command for s in self.specs if s.kind == kind), "")
            suffix = f"; install one with: {hint}" if hint else ""
            raise NotImplementedFeature(f"no {kind} model is installed{suffix}")
        missing = spec.missing()
        if missing:
            raise NotImplementedFeature(
                f"model '{spec.name}' needs {', '.join(missing)}; install it with: {spec.install_command}"
            )
        if not spec.available():
            raise NotImplementedFeature(f"the weights for '{spec.name}' are not installed: {spec.install_command}")
        return spec

    def available(self) -> list[ServiceSpec]:
        return [s for s in self.specs if s.available()]

    def loaded(self) -> list[LoadedService]:
        return list(self._loaded.values())

    # lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._reaper.start()

    async def close(self) -> None:
        await self._reaper.close()
        for name in list(self._loaded):
            await self.unload(name)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def keep_alive_of(self, loaded: LoadedService) -> float:
        return self.keep_alive if loaded.keep_alive is None else loaded.keep_alive

    def expires_at(self, loaded: LoadedService) -> datetime:
        """When the idle model unloads (KEPT_FOREVER for never)."""
        keep = self.keep_alive_of(loaded)
        if keep < 0:
            return KEPT_FOREVER
        return expiry_at(time.time() + max(0.0, loaded.last_used + keep - time.monotonic()))

    async def engine(self, spec: ServiceSpec, keep_alive: float | None = None) -> tuple[Any, int]:
        """The loaded engine for `spec` and the nanoseconds this call spent loading it; a
        `keep_alive` from the request replaces the model's idle time from now on."""
        current = self._loaded.get(spec.name)
        if current is not None:
            current.last_used = time.monotonic()
            if keep_alive is not None:
                current.keep_alive = keep_alive
            return current.engine, 0
        lock = self._locks.setdefault(spec.name, asyncio.Lock())
        started = time.perf_counter_ns()
        async with lock:  # many first requests at once load the model once
            current = self._loaded.get(spec.name)
            if current is None:
                current = await self._load(spec)
        current.last_used = time.monotonic()
        if keep_alive is not None:
            current.keep_alive = keep_alive
        return current.engine, time.perf_counter_ns() - started

    async def run(self, spec: ServiceSpec, call: Callable[..., T], *args: Any) -> T:
        """Run a blocking engine call in a worker thread, counting it as activity on the model."""
        loaded = self._loaded.get(spec.name)
        if loaded is not None:
            loaded.active += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call, *args)
        finally:
            if loaded is not None:
                loaded.active -= 1
                loaded.last_used = time.monotonic()

    async def unload(self, name: str) -> bool:
        loaded = self._loaded.pop(name, None)
        if loaded is None:
            return False
        while loaded.active > 0:
            await asyncio.sleep(0.02)
        await asyncio.get_running_loop().run_in_executor(self._executor, loaded.engine.close)
        log.info("unloaded %s", name)
        return True

    async def _load(self, spec: ServiceSpec) -> LoadedService:
        module_name, _, class_name = spec.engine.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except ImportError as exc:
            raise NotImplementedFeature(
                f"model '{spec.name}' needs {exc.name}; install: {spec.install_command}"
            ) from exc
        engine = cls(spec)
        engine.gpu_services = self.gpu_services  # set before load, where an engine picks its device
        started = time.perf_counter()
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, engine.load)
        except NotImplementedFeature:
            raise
        except Exception as exc:
            raise ModelLoadError(f"could not load {spec.name}: {exc}") from exc
        loaded = LoadedService(spec=spec, engine=engine, load_seconds=time.perf_counter() - started)
        self._loaded[spec.name] = loaded
        log.info("loaded %s (%s) in %.2fs", spec.name, spec.kind, loaded.load_seconds)
        return loaded

    async def _reap(self) -> float | None:
        """Unload the idle models whose keep_alive has run out; seconds until the next one does."""
        now = time.monotonic()
        for name, loaded in list(self._loaded.items()):
            keep = self.keep_alive_of(loaded)
            if keep >= 0 and loaded.active == 0 and now - loaded.last_used >= keep:
                await self.unload(name)
        upcoming = [loaded.last_used + self.keep_alive_of(loaded) for loaded in self._loaded.values()
                    if self.keep_alive_of(loaded) >= 0 and loaded.active == 0]
        return min(upcoming) - time.monotonic() if upcoming else None
