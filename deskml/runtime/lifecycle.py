"""Loaded-model lifecycle: load on first use (once, however many ask at once), keep_alive expiry,
LRU eviction under a model count and memory budget, and draining before unload."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from deskml.core.aio import wait_event
from deskml.core.durations import KEPT_FOREVER, expiry_at
from deskml.core.errors import BadRequest, Busy, ModelLoadError
from deskml.core.validate import INT32_MAX
from deskml.engines import devices
from deskml.engines.contract import EngineLoader, LoadConfig, LocalEngine
from deskml.engines.devices import CPU_PLAN, GpuPlan
from deskml.engines.llama_cpp import load_llama_cpp
from deskml.runtime import gotemplate
from deskml.runtime.reaper import Reaper
from deskml.runtime.registry import ModelEntry, Registry
from deskml.runtime.scheduler import PRIORITY_LIVE, SlotScheduler
from deskml.settings import Settings

log = logging.getLogger("deskml.runtime")

Kind = Literal["llm", "embed"]
# (num_gpu, main_gpu) a load asked for; None = automatic. Part of an instance's identity, like num_ctx.
GpuRequest = tuple[int | None, int | None]
Key = tuple[str, Kind, int, GpuRequest]


@dataclass
class LoadedModel:
    entry: ModelEntry
    kind: Kind
    num_ctx: int
    engine: LocalEngine
    scheduler: SlotScheduler
    size_bytes: int
    load_seconds: float
    keep_alive: float
    expires_at: float | None = None  # wall-clock seconds; None = never (or busy)
    last_used: float = field(default_factory=time.monotonic)
    pins: int = 0
    draining: bool = False
    gpu: GpuPlan = CPU_PLAN

    @property
    def size_vram(self) -> int:
        """Bytes on GPUs: the offloaded share of weights and KV cache (0 on the CPU)."""
        return int(self.size_bytes * self.gpu.fraction)

    @property
    def processor(self) -> str:
        """Ollama's PROCESSOR cell: "100% CPU", "100% GPU" or the split."""
        return devices.processor(self.gpu.fraction)

    @property
    def device(self) -> str:
        """The first device holding layers ("cpu" when none is offloaded)."""
        return self.gpu.devices[0].name if self.gpu.n_gpu_layers > 0 and self.gpu.devices else "cpu"

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def busy(self) -> bool:
        return self.pins > 0 or not self.scheduler.idle

    def expires_datetime(self) -> datetime:
        if self.keep_alive < 0:
            return KEPT_FOREVER
        if self.expires_at is None:  # busy: the clock starts when the last request ends
            return expiry_at(time.time() + self.keep_alive)
        return expiry_at(self.expires_at)


@dataclass
class Lease:
    model: LoadedModel
    load_ns: int
    queue_ns: int


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 << 30


# Bytes per cached K/V element for each KV cache type (ggml block sizes: q8_0 34 B / 32, q4_0 18 B / 32).
KV_BYTES = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}


def estimate_bytes(metadata: dict[str, Any], file_size: int, total_ctx: int, kv_type: str = "f16") -> int:
    """Weights (mmapped file) + KV cache for `total_ctx` tokens + a fixed compute margin."""
    arch = metadata.get("general.architecture", "")
    layers = int(metadata.get(f"{arch}.block_count", 0) or 0)
    embd = int(metadata.get(f"{arch}.embedding_length", 0) or 0)
    heads = int(metadata.get(f"{arch}.attention.head_count", 1) or 1)
    kv_heads = metadata.get(f"{arch}.attention.head_count_kv", heads) or heads
    kv_heads = int(max(kv_heads) if isinstance(kv_heads, list) else kv_heads)
    key_len = int(metadata.get(f"{arch}.attention.key_length", embd // max(heads, 1)) or 0)
    value_len = int(metadata.get(f"{arch}.attention.value_length", key_len) or 0)
    kv = int(total_ctx * layers * kv_heads * (key_len + value_len) * KV_BYTES.get(kv_type, 2.0))
    return file_size + kv + (64 << 20)


class ModelManager:
    def __init__(self, settings: Settings, registry: Registry, loader: EngineLoader | None = None) -> None:
        """`loader` makes the engine of each load; None = llama.cpp (tests pass a fake that needs no model)."""
        self.settings = settings
        self.registry = registry
        self._loader: EngineLoader = loader or load_llama_cpp
        self._loaded: dict[Key, LoadedModel] = {}
        self._loading: dict[Key, asyncio.Task[LoadedModel]] = {}
        self._waiting: dict[Key, int] = {}  # requests waiting for that load
        self._replacing: dict[tuple[str, Kind], asyncio.Lock] = {}  # one (re)load at a time per model and kind
        self._reaper = Reaper(self._reap, name="deskml-keepalive")
        self._changed = asyncio.Event()
        self.budget = settings.memory_budget_mb * (1 << 20) or int(_physical_memory() * 0.75)
        self.on_change: list[Callable[[], None]] = []
        self._gpus_usable: bool | None = None

    # public ------------------------------------------------------------------------------
    def start(self) -> None:
        self._reaper.start()

    async def close(self) -> None:
        await self._reaper.close()
        for task in list(self._loading.values()):
            task.cancel()
        for model in list(self._loaded.values()):
            await self._unload(model)

    def loaded(self) -> list[LoadedModel]:
        return sorted(self._loaded.values(), key=lambda m: m.last_used, reverse=True)

    def context_for(self, entry: ModelEntry, requested: int | None) -> int:
        params = entry.manifest.parameters
        wanted = int(requested or params.get("num_ctx") or self.settings.num_ctx)
        trained = self.registry.gguf_info(entry).context_length or wanted
        # llama.cpp holds num_ctx x num_parallel in a 32-bit int
        ceiling = INT32_MAX // max(1, self.settings.num_parallel)
        return max(256, min(wanted, trained, ceiling))

    @staticmethod
    def requested_gpu(entry: ModelEntry, num_gpu: int | None = None, main_gpu: int | None = None) -> GpuRequest:
        """A request's num_gpu/main_gpu, else the model's PARAMETER lines; negative num_gpu = automatic."""
        params = entry.manifest.parameters
        layers = num_gpu if num_gpu is not None else params.get("num_gpu")
        main = main_gpu if main_gpu is not None else params.get("main_gpu")
        layers = None if layers is None or int(layers) < 0 else int(layers)
        return layers, None if main is None or int(main) < 0 else int(main)

    def gpu_for(self, entry: ModelEntry, num_gpu: int | None = None, main_gpu: int | None = None) -> GpuRequest:
        """The GPU part of an instance's identity. Without a usable GPU, num_gpu and main_gpu change nothing,
        so they must not reload the model either (clients such as Open WebUI send num_gpu)."""
        if self._gpus_usable is None:  # the devices a build sees do not change while it runs
            self._gpus_usable = self.settings.gpu != "off" and bool(
                devices.select_devices(self.settings.gpu, devices.llama_devices()))
        return self.requested_gpu(entry, num_gpu, main_gpu) if self._gpus_usable else (None, None)

    @contextlib.asynccontextmanager
    async def lease(
        self, name: str, *, kind: Kind = "llm", num_ctx: int | None = None,
        keep_alive: float | None = None, priority: int = PRIORITY_LIVE,
        num_gpu: int | None = None, main_gpu: int | None = None,
    ) -> AsyncIterator[Lease]:
        """Hold one decoding slot of `name` (loading it if needed) for the duration of a request."""
        entry = self.registry.get(name)
        ctx = self.context_for(entry, num_ctx)
        started = time.perf_counter_ns()
        model, waited = await self._get_or_load(entry, kind, ctx, self.gpu_for(entry, num_gpu, main_gpu))
        load_ns = time.perf_counter_ns() - started if waited else 0
        queued_at = time.perf_counter_ns()
        try:
            await model.scheduler.acquire(priority)
        except BaseException:
            model.pins -= 1
            self._touch(model, keep_alive)
            raise
        model.pins -= 1
        model.expires_at = None
        queue_ns = time.perf_counter_ns() - queued_at
        try:
            yield Lease(model=model, load_ns=load_ns, queue_ns=queue_ns)
        finally:
            model.scheduler.release()
            self._touch(model, keep_alive)

    async def ensure_loaded(self, name: str, keep_alive: float | None = None, kind: Kind = "llm",
                            num_ctx: int | None = None, num_gpu: int | None = None,
                            main_gpu: int | None = None) -> tuple[LoadedModel, int]:
        """Load without generating (Ollama's empty-prompt request). Returns the model and load ns."""
        entry = self.registry.get(name)
        started = time.perf_counter_ns()
        model, _ = await self._get_or_load(entry, kind, self.context_for(entry, num_ctx),
                                           self.gpu_for(entry, num_gpu, main_gpu))
        elapsed = time.perf_counter_ns() - started
        model.pins -= 1
        self._touch(model, keep_alive)
        return model, elapsed

    async def unload(self, name: str) -> bool:
        """Unload every instance of `name`, waiting for its requests to finish first."""
        canonical = self.registry.canonical(name)
        targets = [m for m in self._loaded.values() if m.name == canonical]
        for model in targets:
            await self._unload(model)
        return bool(targets)

    # internals ---------------------------------------------------------------------------
    def _touch(self, model: LoadedModel, keep_alive: float | None) -> None:
        ttl = self.settings.keep_alive if keep_alive is None else keep_alive
        model.keep_alive = ttl
        model.last_used = time.monotonic()
        if model.busy or ttl < 0:
            model.expires_at = None
        else:
            model.expires_at = time.time() + ttl
        self._changed.set()
        self._reaper.wake()

    async def _get_or_load(self, entry: ModelEntry, kind: Kind, ctx: int,
                           gpu: GpuRequest = (None, None)) -> tuple[LoadedModel, bool]:
        """The loaded, pinned model, and whether this call had to wait for it to load."""
        if entry.manifest.kind != "llm":  # a pulled embedding/Whisper/voice model is no llama.cpp model
            raise BadRequest(f"'{entry.name}' is a model of kind {entry.manifest.kind}, not a language model; "
                             f"use the endpoint for that kind (see docs/models.md)", param="model")
        key: Key = (entry.name, kind, ctx, gpu)
        while True:
            model = self._loaded.get(key)
            if model is not None and model.entry.digest == entry.digest and not model.draining:
                model.pins += 1
                model.last_used = time.monotonic()
                return model, False
            if model is not None:  # replaced on disk or draining: finish that first
                await self._unload(model)
                continue
            task = self._loading.get(key)
            if task is None:
                task = asyncio.create_task(self._replace(entry, kind, ctx, gpu), name=f"load {entry.name}")
                self._loading[key] = task
                task.add_done_callback(lambda _task: self._loading.pop(key, None))
            # Counted while waiting, so that a request for another context length cannot unload the
            # copy between its load and this waiter's pin.
            self._waiting[key] = self._waiting.get(key, 0) + 1
            try:
                # shield: one impatient client must not cancel a load others are waiting for
                model = await asyncio.shield(task)
            finally:
                self._waiting[key] -= 1
                if not self._waiting[key]:
                    del self._waiting[key]
            if not model.draining:
                model.pins += 1
                return model, True

    async def _replace(self, entry: ModelEntry, kind: Kind, ctx: int, gpu: GpuRequest = (None, None)) -> LoadedModel:
        """Load `entry` with context `ctx` in place of any copy of it with another context length.

        One copy per model and kind, as Ollama keeps: a request that needs another num_ctx waits for
        the loaded copy's requests to finish, then the model reloads. Two copies would double its
        memory, and any client could ask for a third with yet another num_ctx."""
        async with self._replacing.setdefault((entry.name, kind), asyncio.Lock()):
            for other_key, other in list(self._loaded.items()):
                if other_key[:2] != (entry.name, kind) or other_key == (entry.name, kind, ctx, gpu):
                    continue
                while self._waiting.get(other_key, 0) > 0:  # its waiters get their pin (and their reply) first
                    await asyncio.sleep(0.01)
                log.info("reloading %s with context %d, gpu %s (was %d, %s)", entry.name, ctx, gpu,
                         other.num_ctx, other_key[3])
                await self._unload(other)
            current = self._loaded.get((entry.name, kind, ctx, gpu))
            if current is not None and current.entry.digest == entry.digest and not current.draining:
                return current
            return await self._load(entry, kind, ctx, gpu)

    def _gpu_plan(self, metadata: dict[str, Any], model_bytes: int, size: int, gpu: GpuRequest) -> GpuPlan:
        if self.settings.gpu == "off":
            return CPU_PLAN
        arch = metadata.get("general.architecture", "")
        return devices.plan(
            setting=self.settings.gpu, devices=devices.llama_devices(),
            block_count=int(metadata.get(f"{arch}.block_count", 0) or 0), model_bytes=model_bytes,
            kv_bytes=max(0, size - model_bytes), num_gpu=gpu[0], main_gpu=gpu[1],
        )

    async def _load(self, entry: ModelEntry, kind: Kind, ctx: int, gpu: GpuRequest = (None, None)) -> LoadedModel:
        info = self.registry.gguf_info(entry)
        parallel = max(1, self.settings.num_parallel)
        kv_type = self.settings.kv_cache_type if self.settings.flash_attention else "f16"
        size = estimate_bytes(info.metadata, entry.size, ctx * parallel, kv_type)
        await self._make_room(size)
        template = entry.manifest.template
        jinja = template if template and not gotemplate.is_go_template(template) else None
        config = LoadConfig(
            path=entry.path, num_ctx=ctx, num_parallel=parallel, threads=self.settings.num_threads,
            embedding=kind == "embed", chat_template=jinja, engine_log=self.settings.engine_log,
            kv_cache_type=self.settings.kv_cache_type, flash_attention=self.settings.flash_attention,
            # an embedding input must fit one micro-batch whole, so embedding contexts batch a full context
            batch=ctx if kind == "embed" else max(32, self.settings.num_batch),
            gpu=self._gpu_plan(info.metadata, entry.size, size, gpu),
        )
        started = time.perf_counter()
        try:
            engine = await self._loader(config)
        except ModelLoadError:
            raise
        except Exception as exc:  # pragma: no cover - defensive
            raise ModelLoadError(f"could not load {entry.name}: {exc}") from exc
        elapsed = time.perf_counter() - started
        model = LoadedModel(
            entry=entry, kind=kind, num_ctx=ctx, engine=engine,
            scheduler=SlotScheduler(parallel, self.settings.max_queue),
            size_bytes=size, load_seconds=elapsed, keep_alive=self.settings.keep_alive, gpu=engine.gpu,
        )
        self._loaded[(entry.name, kind, ctx, gpu)] = model
        log.info("loaded %s (%s, ctx %d x %d slots) in %.2fs, %s", entry.name, kind, ctx, parallel, elapsed,
                 devices.processor(engine.gpu.fraction))
        for callback in self.on_change:
            callback()
        return model

    async def _make_room(self, needed: int) -> None:
        deadline = time.monotonic() + 60
        while True:
            used = sum(m.size_bytes for m in self._loaded.values())
            too_many = len(self._loaded) >= max(1, self.settings.max_loaded_models)
            too_big = used + needed > self.budget and self._loaded
            if not too_many and not too_big:
                return
            idle = [m for m in self._loaded.values() if not m.busy and not m.draining]
            if idle:
                victim = min(idle, key=lambda m: m.last_used)
                log.info("evicting %s to make room", victim.name)
                await self._unload(victim)
                continue
            if time.monotonic() > deadline:
                raise Busy("every loaded model is busy; no room to load another", retry_after=5.0)
            self._changed.clear()
            await wait_event(self._changed, 0.5)

    async def _unload(self, model: LoadedModel) -> None:
        if model.draining:
            while any(m is model for m in self._loaded.values()):
                await asyncio.sleep(0.05)
            return
        model.draining = True
        while model.pins > 0:
            await asyncio.sleep(0.02)
        await model.scheduler.wait_idle()
        for key, value in list(self._loaded.items()):
            if value is model:
                del self._loaded[key]
        await asyncio.get_running_loop().run_in_executor(None, model.engine.close)
        log.info("unloaded %s (%s)", model.name, model.kind)
        self._changed.set()
        for callback in self.on_change:
            callback()

    async def _reap(self) -> float | None:
        """Unload the idle models whose keep_alive has run out; seconds until the next one does."""
        now = time.time()
        for model in list(self._loaded.values()):
            if model.expires_at is not None and model.expires_at <= now and not model.busy:
                await self._unload(model)
        upcoming = [m.expires_at for m in self._loaded.values() if m.expires_at is not None]
        return min(upcoming) - time.time() if upcoming else None

