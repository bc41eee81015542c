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
from pathlib import Path
from typing import Any, Literal

from deskml.core.aio import wait_event
from deskml.core.durations import KEPT_FOREVER, expiry_at
from deskml.core.errors import BadRequest, Busy, ModelLoadError
from deskml.core.speculation import SpeculativeMode
from deskml.core.validate import INT32_MAX
from deskml.engines import devices
from deskml.engines.contract import EngineLoader, LoadConfig, LocalEngine
from deskml.engines.devices import CPU_PLAN, GpuPlan
from deskml.engines.llama_cpp import load_llama_cpp
from deskml.runtime import gotemplate
from deskml.runtime.gguf import read_gguf, vocabulary_mismatch
from deskml.runtime.reaper import Reaper
from deskml.runtime.registry import ModelEntry, Registry
from deskml.runtime.scheduler import PRIORITY_LIVE, SlotScheduler
from deskml.settings import Settings

log = logging.getLogger("deskml.runtime")

Kind = Literal["llm", "embed"]
# (num_gpu, main_gpu) a load asked for; None = automatic. Part of an instance's identity, like num_ctx.
GpuRequest = tuple[int | None, int | None]


@dataclass(frozen=True)
class Speculation:
    """How a loaded copy speculates, `auto` resolved: "off", an n-gram mode, or "draft" with its GGUF.
    Part of an instance's identity: llama.cpp fixes it per context, so another mode is another load."""

    mode: str = "off"
    draft: Path | None = None


NO_SPECULATION = Speculation()
# What `auto` uses without a draft model. Measured on the bundled SmolLM2 (bench/RESULTS.md):
# ngram_map_k drafts only continuations it has seen before, so almost every draft is accepted and
# a draft that fails costs little when other slots are busy.
AUTO_NGRAM = "ngram_map_k"
Key = tuple[str, Kind, int, GpuRequest, Speculation]


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
    speculation: Speculation = NO_SPECULATION

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
        self._vocabularies: dict[tuple[Path, Path], str | None] = {}  # (model, draft) -> why not, None = fits

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

    def speculation_for(self, entry: ModelEntry, requested: SpeculativeMode | None = None,
                        kind: Kind = "llm") -> Speculation:
        """The speculative decoding a load of `entry` gets: the request's mode, else the model's PARAMETER,
        else the setting; `auto` resolved to the draft model when there is one that fits, else AUTO_NGRAM."""
        if kind == "embed":
            return NO_SPECULATION
        mode = requested or entry.manifest.parameters.get("speculative") or self.settings.speculative
        if mode == "off":
            return NO_SPECULATION
        if mode in {"auto", "draft"}:
            draft, why_not = self._draft_for(entry)
            if draft is not None:
                return Speculation("draft", draft)
            if mode == "draft":
                raise BadRequest(f"speculative mode draft: {why_not}", param="speculative")
            flash_f16 = self.settings.flash_attention and self.settings.kv_cache_type == "f16"
            # llama.cpp's batched check with flash attention over an f16 cache measurably changed a
            # temperature-0 reply; auto must never change what is produced, so it stays off there.
            return NO_SPECULATION if flash_f16 else Speculation(AUTO_NGRAM)
        return Speculation(mode)

    def _draft_for(self, entry: ModelEntry) -> tuple[Path | None, str]:
        """The model's draft GGUF (its DRAFT, else the draft_model setting when its vocabulary fits), or
        None and why there is none."""
        if entry.draft_name is not None:
            if entry.draft_path is None:
                return None, (f"the file of {entry.name}'s draft model '{entry.draft_name}' is gone; "
                              f"recreate the model with another DRAFT")
            return entry.draft_path, ""
        if not self.settings.draft_model:
            return None, (f"'{entry.name}' has no draft model: add DRAFT <model> to its Modelfile "
                          f"or set DESKML_DRAFT_MODEL")
        draft = self.registry.find(self.settings.draft_model)
        if draft is None or draft.manifest.kind != "llm":
            return None, f"the draft_model setting names '{self.settings.draft_model}', which is no local LLM"
        if draft.path == entry.path:  # a model drafting for itself wastes its own time
            return None, f"the draft_model setting names '{entry.name}' itself"
        pair = (entry.path, draft.path)
        if pair not in self._vocabularies:
            self._vocabularies[pair] = vocabulary_mismatch(entry.path, draft.path)
        why = self._vocabularies[pair]
        if why is not None:
            return None, f"the draft_model '{draft.name}' cannot draft for '{entry.name}': {why}"
        return draft.path, ""

    @contextlib.asynccontextmanager
    async def lease(
        self, name: str, *, kind: Kind = "llm", num_ctx: int | None = None,
        keep_alive: float | None = None, priority: int = PRIORITY_LIVE,
        num_gpu: int | None = None, main_gpu: int | None = None, speculative: SpeculativeMode | None = None,
    ) -> AsyncIterator[Lease]:
        """Hold one decoding slot of `name` (loading it if needed) for the duration of a request."""
        entry = self.registry.get(name)
        ctx = self.context_for(entry, num_ctx)
        speculation = self.speculation_for(entry, speculative, kind)
        started = time.perf_counter_ns()
        model, waited = await self._get_or_load(entry, kind, ctx, self.gpu_for(entry, num_gpu, main_gpu),
                                                speculation)
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
                            main_gpu: int | None = None,
                            speculative: SpeculativeMode | None = None) -> tuple[LoadedModel, int]:
        """Load without generating (Ollama's empty-prompt request). Returns the model and load ns."""
        entry = self.registry.get(name)
        speculation = self.speculation_for(entry, speculative, kind)
        started = time.perf_counter_ns()
        model, _ = await self._get_or_load(entry, kind, self.context_for(entry, num_ctx),
                                           self.gpu_for(entry, num_gpu, main_gpu), speculation)
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

    async def _get_or_load(self, entry: ModelEntry, kind: Kind, ctx: int, gpu: GpuRequest = (None, None),
                           speculation: Speculation = NO_SPECULATION) -> tuple[LoadedModel, bool]:
        """The loaded, pinned model, and whether this call had to wait for it to load."""
        if entry.manifest.kind != "llm":  # a pulled embedding/Whisper/voice model is no llama.cpp model
            raise BadRequest(f"'{entry.name}' is a model of kind {entry.manifest.kind}, not a language model; "
                             f"use the endpoint for that kind (see docs/models.md)", param="model")
        key: Key = (entry.name, kind, ctx, gpu, speculation)
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
                task = asyncio.create_task(self._replace(entry, kind, ctx, gpu, speculation),
                                           name=f"load {entry.name}")
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

    async def _replace(self, entry: ModelEntry, kind: Kind, ctx: int, gpu: GpuRequest = (None, None),
                       speculation: Speculation = NO_SPECULATION) -> LoadedModel:
        """Load `entry` with context `ctx` in place of any copy of it with another context length.

        One copy per model and kind, as Ollama keeps: a request that needs another num_ctx waits for
        the loaded copy's requests to finish, then the model reloads. Two copies would double its
        memory, and any client could ask for a third with yet another num_ctx."""
        async with self._replacing.setdefault((entry.name, kind), asyncio.Lock()):
            for other_key, other in list(self._loaded.items()):
                if other_key[:2] != (entry.name, kind) or other_key == (entry.name, kind, ctx, gpu, speculation):
                    continue
                while self._waiting.get(other_key, 0) > 0:  # its waiters get their pin (and their reply) first
                    await asyncio.sleep(0.01)
                log.info("reloading %s with context %d, gpu %s, speculative %s (was %d, %s, %s)", entry.name,
                         ctx, gpu, speculation.mode, other.num_ctx, other_key[3], other_key[4].mode)
                await self._unload(other)
            current = self._loaded.get((entry.name, kind, ctx, gpu, speculation))
            if current is not None and current.entry.digest == entry.digest and not current.draining:
                return current
            return await self._load(entry, kind, ctx, gpu, speculation)

    def _gpu_plan(self, metadata: dict[str, Any], model_bytes: int, size: int, gpu: GpuRequest) -> GpuPlan:
        if self.settings.gpu == "off":
            return CPU_PLAN
        arch = metadata.get("general.architecture", "")
        return devices.plan(
            setting=self.settings.gpu, devices=devices.llama_devices(),
            block_count=int(metadata.get(f"{arch}.block_count", 0) or 0), model_bytes=model_bytes,
            kv_bytes=max(0, size - model_bytes), num_gpu=gpu[0], main_gpu=gpu[1],
        )

    async def _load(self, entry: ModelEntry, kind: Kind, ctx: int, gpu: GpuRequest = (None, None),
                    speculation: Speculation = NO_SPECULATION) -> LoadedModel:
        info = self.registry.gguf_info(entry)
        parallel = max(1, self.settings.num_parallel)
        kv_type = self.settings.kv_cache_type if self.settings.flash_attention else "f16"
        size = estimate_bytes(info.metadata, entry.size, ctx * parallel, kv_type)
        if speculation.draft is not None:  # the draft has its own weights and a cache as long as the model's
            draft_meta = (await asyncio.to_thread(read_gguf, speculation.draft)).metadata
            size += estimate_bytes(draft_meta, speculation.draft.stat().st_size, ctx * parallel, kv_type)
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
            speculative=speculation.mode, draft_path=speculation.draft, draft_max=self.settings.speculative_draft_max,
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
            speculation=speculation,
        )
        self._loaded[(entry.name, kind, ctx, gpu, speculation)] = model
        log.info("loaded %s (%s, ctx %d x %d slots, speculative %s) in %.2fs, %s", entry.name, kind, ctx, parallel,
                 speculation.mode, elapsed, devices.processor(engine.gpu.fraction))
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

