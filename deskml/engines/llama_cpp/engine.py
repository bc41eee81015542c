"""GGUF chat, completion and embeddings on llama.cpp's server core (the `xllamacpp` wheel).

One `LlamaCppModel` is one loaded llama.cpp server context: N slots sharing a unified KV cache,
continuous batching and chunked prefill done by llama.cpp itself. A request runs in a worker
thread (the call blocks with the GIL released); its streamed chunks cross to the event loop
through a queue. Returning True from the chunk callback tells llama.cpp to cancel the task, which
is how a client disconnect frees its slot at the next decoded token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from deskml.core.errors import BadRequest, ContextOverflow, EngineError, ModelLoadError, from_engine
from deskml.core.types import EngineRequest, Event
from deskml.engines.contract import LoadConfig
from deskml.engines.devices import GpuPlan, fallback_layers
from deskml.engines.llama_cpp.body import Endpoint, request_body
from deskml.engines.openai_wire import ChunkTranslator

log = logging.getLogger("deskml.engines.llama_cpp")


class _End:
    """What the worker thread queues after llama.cpp's last chunk."""


_END = _End()


def _restore_python_signal_handlers() -> None:
    """llama.cpp's server init installs its own SIGINT/SIGTERM handlers; put Python's back so
    Ctrl-C and SIGTERM still reach uvicorn's graceful shutdown. Only the main thread may do this."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError, TypeError):
            handler = signal.getsignal(sig)
            if handler is not None:
                signal.signal(sig, handler)


class LlamaCppModel:
    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        self._server: Any = None
        # One thread per request in flight: slots + queued requests never exceed this because
        # the scheduler admits at most `num_parallel` at a time.
        self._executor = ThreadPoolExecutor(
            max_workers=max(4, config.num_parallel * 2), thread_name_prefix="llama"
        )
        self.load_seconds = 0.0
        self.gpu: GpuPlan = config.gpu  # what the load really got, after any fallback

    # lifecycle ---------------------------------------------------------------------------
    def load(self) -> None:
        """Blocking: create the llama.cpp context (call from a worker thread)."""
        try:
            import xllamacpp
        except ImportError as exc:  # pragma: no cover - xllamacpp is a core dependency
            raise ModelLoadError(f"xllamacpp is not installed: {exc}") from exc
        cfg = self.config
        params = xllamacpp.CommonParams()
        params.model.path = str(cfg.path)
        params.n_parallel = cfg.num_parallel
        params.n_ctx = cfg.num_ctx * cfg.num_parallel
        # Generation: a split KV cache, so every slot owns exactly num_ctx tokens (Ollama's limit
        # per request), and concurrent replies at temperature 0 equal the same requests run alone.
        # Embeddings: llama.cpp pools several inputs of one batch wrongly with a split cache
        # (measured: 0.24 max abs error), so embedding contexts use the unified one.
        params.kv_unified = cfg.embedding
        params.n_batch = cfg.batch
        params.n_ubatch = cfg.batch
        params.cache_ram_mib = 0  # host-RAM prompt cache off: slot caches already cover reuse
        params.use_jinja = True
        params.warmup = True
        params.n_threads_http = 1
        # xllamacpp also opens llama.cpp's HTTP listener on a random loopback port; a secret key
        # that nobody learns makes that port useless to other local users.
        params.api_keys = [secrets.token_urlsafe(32)]
        params.verbosity = 1 if cfg.engine_log else -1
        fa = xllamacpp.llama_flash_attn_type
        params.flash_attn_type = (
            fa.LLAMA_FLASH_ATTN_TYPE_ENABLED if cfg.flash_attention else fa.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        kv_type = None
        if cfg.kv_cache_type != "f16" and cfg.flash_attention:  # a quantized V cache needs flash attention
            kv_type = getattr(xllamacpp.ggml_type, f"GGML_TYPE_{cfg.kv_cache_type.upper()}")
            params.cache_type_k = kv_type
            params.cache_type_v = kv_type
        _speculate(xllamacpp, params, cfg, kv_type)
        if cfg.threads > 0:
            params.cpuparams.n_threads = cfg.threads
            params.cpuparams_batch.n_threads = cfg.threads
        if cfg.chat_template:
            params.chat_template = cfg.chat_template
        if cfg.embedding:
            params.embedding = True
            params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
        started = time.perf_counter()
        self._server, self.gpu = _load_with_fallback(lambda plan: xllamacpp.Server(_place(xllamacpp, params, plan)),
                                                     cfg.gpu, cfg.path.name)
        self.load_seconds = time.perf_counter() - started

    def after_load_on_loop(self) -> None:
        _restore_python_signal_handlers()

    def close(self) -> None:
        """Blocking: free the context. Callers make sure no request is in flight."""
        server, self._server = self._server, None
        del server
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def loaded(self) -> bool:
        return self._server is not None

    # requests ----------------------------------------------------------------------------
    async def stream(self, request: EngineRequest) -> AsyncGenerator[Event, None]:
        """The reply to `request` as core events, `Done` (with llama.cpp's timings) last."""
        endpoint, body = request_body(request, self.config.num_ctx)
        translator = ChunkTranslator()
        task = self._start(endpoint, body)
        try:
            while (chunk := await task.next()) is not None:
                for event in translator.feed(chunk):
                    yield event
        finally:
            await task.close()
        yield translator.done(request.model)

    async def stream_raw(self, endpoint: Endpoint, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """llama.cpp's own OpenAI-style chunks for a body built by hand (scripts/gpu_check.py)."""
        task = self._start(endpoint, body)
        try:
            while (chunk := await task.next()) is not None:
                yield chunk
        finally:
            await task.close()

    def _start(self, endpoint: Endpoint, body: dict[str, Any]) -> _Task:
        server = self._server
        if server is None:
            raise EngineError("model is not loaded")
        call: Callable[..., Any] = (
            server.handle_chat_completions if endpoint == "chat" else server.handle_completions
        )
        return _Task(self._executor, call, {**body, "stream": True})

    async def embed(self, inputs: list[str]) -> tuple[list[list[float]], int]:
        server = self._server
        if server is None:
            raise EngineError("model is not loaded")
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            self._executor, lambda: server.handle_embeddings({"input": inputs, "encoding_format": "float"})
        )
        if isinstance(result, dict) and "error" in result:
            raise _error_from_llama(result["error"])
        vectors = [item["embedding"] for item in sorted(result.get("data", []), key=lambda d: d.get("index", 0))]
        return vectors, int((result.get("usage") or {}).get("prompt_tokens", 0))


class _Task:
    """One request on llama.cpp's server core: it runs in a worker thread and hands its chunks to the loop
    through a queue. A plain object rather than an async generator, so that the engine's stream is the only
    generator between llama.cpp and the runtime."""

    def __init__(self, executor: ThreadPoolExecutor, call: Callable[..., Any], body: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        # llama.cpp's chunks (JSON objects), then the worker's exception if it raised, then _END
        self._queue: asyncio.Queue[dict[str, Any] | Exception | _End] = asyncio.Queue()
        self._cancel = threading.Event()
        queue, cancel = self._queue, self._cancel

        def on_chunk(chunk: dict[str, Any]) -> bool:
            loop.call_soon_threadsafe(queue.put_nowait, chunk)
            return cancel.is_set()

        def run() -> None:
            try:
                call(body, on_chunk)
            except Exception as exc:
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _END)

        self._future = loop.run_in_executor(executor, run)

    async def next(self) -> dict[str, Any] | None:
        """The next chunk; None at the end. An engine error raises."""
        item = await self._queue.get()
        if isinstance(item, _End):
            return None
        if isinstance(item, Exception):
            raise _engine_error(str(item))
        if isinstance(item, dict) and "error" in item:
            raise _error_from_llama(item["error"])
        return item

    async def close(self) -> None:
        """Cancel at llama.cpp's next decoded token (True from the chunk callback)."""
        self._cancel.set()
        # Let the worker see the cancel flag and return before the slot is reused.
        with contextlib.suppress(Exception):
            await asyncio.shield(self._future)


async def load_llama_cpp(config: LoadConfig) -> LlamaCppModel:
    """The default `EngineLoader`: load in a worker thread (llama.cpp blocks), then fix up signals on the loop."""
    engine = LlamaCppModel(config)
    await asyncio.get_running_loop().run_in_executor(None, engine.load)
    engine.after_load_on_loop()
    return engine


def _speculate(xllamacpp: Any, params: Any, cfg: LoadConfig, kv_type: Any) -> None:
    """Set llama.cpp's speculative decoding as `cfg` says (the runtime resolved `auto` already)."""
    if cfg.speculative == "off":
        return
    kinds = xllamacpp.common_speculative_type
    spec = params.speculative
    if cfg.speculative != "draft":
        spec.types = [getattr(kinds, f"COMMON_SPECULATIVE_TYPE_{cfg.speculative.upper()}")]
        # llama.cpp proposes up to 48 tokens per map match; on a CPU a long proposal that fails partway
        # costs more than it saves (measured, bench/RESULTS.md), hence draft_max. ngram_simple and
        # ngram_mod keep llama.cpp's own lengths: ngram_simple drafted nothing at all with 8.
        for ngram in (spec.ngram_map_k, spec.ngram_map_k4v):
            ngram.size_m = cfg.draft_max
        return
    if cfg.draft_path is None:
        raise ModelLoadError("speculative mode draft needs a draft model")
    spec.types = [kinds.COMMON_SPECULATIVE_TYPE_DRAFT_SIMPLE]
    draft = spec.draft
    draft.mparams.path = str(cfg.draft_path)
    draft.n_max = cfg.draft_max
    # The draft's cache in the model's precision: measured with the bundled model drafting for itself,
    # an f16 draft cache beside a q8_0 model cache accepted 22 of 39 drafts, the same type 18 of 21.
    if kv_type is not None:
        draft.cache_type_k = kv_type
        draft.cache_type_v = kv_type
    if cfg.threads > 0:
        draft.cpuparams.n_threads = cfg.threads
        draft.cpuparams_batch.n_threads = cfg.threads


def _place(xllamacpp: Any, params: Any, plan: GpuPlan) -> Any:
    """Put `plan`'s offload on the params. No layers = the CPU, exactly as a CPU-only build runs."""
    params.n_gpu_layers = plan.n_gpu_layers
    # a draft model follows the model: on the CPU when the model is, all its layers on the GPU otherwise
    params.speculative.draft.n_gpu_layers = 0 if plan.n_gpu_layers == 0 else -1
    if plan.n_gpu_layers > 0 and plan.devices:
        split = xllamacpp.llama_split_mode
        params.main_gpu = plan.main_gpu
        params.split_mode = split.LLAMA_SPLIT_MODE_NONE if len(plan.devices) == 1 else split.LLAMA_SPLIT_MODE_LAYER
        # our own layer count decides; llama.cpp's fit pass would otherwise change it behind our back
        params.fit_params = False
        if len(plan.devices) > 1:
            shares = list(params.tensor_split)
            for i, share in enumerate(plan.split[: len(shares)]):
                shares[i] = share
            params.tensor_split = shares
    return params


def _load_with_fallback(make: Callable[[GpuPlan], Any], plan: GpuPlan, name: str) -> tuple[Any, GpuPlan]:
    """Load with `plan`; when that fails with layers on a GPU (out of device memory, a driver error), retry
    with fewer layers, then on the CPU. Logged, and only the CPU's own failure is the caller's error."""
    attempts = fallback_layers(plan.n_gpu_layers) if plan.n_gpu_layers > 0 else [0]
    for layers in attempts:
        current = plan.with_layers(layers)
        try:
            return make(current), current
        except Exception as exc:
            if layers == 0:
                raise ModelLoadError(f"llama.cpp could not load {name}: {exc}") from exc
            log.warning("loading %s with %d layers on %s failed (%s); retrying with fewer",
                        name, layers, current.backend, exc)
    raise ModelLoadError(f"llama.cpp could not load {name}")  # pragma: no cover - attempts end with 0


_OUT_OF_MEMORY = ("out of memory", "cudaerrormemoryallocation", "failed to allocate", "erroroutofdevicememory")


def _out_of_memory(message: str) -> Exception | None:
    if not any(marker in message.lower() for marker in _OUT_OF_MEMORY):
        return None
    return from_engine(EngineError(
        f"the device ran out of memory during this request ({message}); the model stays loaded. "
        "Retry with a smaller num_ctx or fewer parallel requests, or load fewer layers on the GPU (option num_gpu)"))


def _engine_error(message: str) -> Exception:
    lowered = message.lower()
    if (oom := _out_of_memory(message)) is not None:
        return oom
    if "json schema" in lowered or "grammar" in lowered or "parser" in lowered or "invalid" in lowered:
        return from_engine(BadRequest(message))
    if "image input is not supported" in lowered or "audio input is not supported" in lowered:
        # llama.cpp's wording for a text-only model (no multimodal projector) given media
        return BadRequest("this model does not support images or audio: it is a text-only model")
    return from_engine(EngineError(message))


def _error_from_llama(error: Any) -> Exception:
    if not isinstance(error, dict):
        return from_engine(EngineError(str(error)))
    message = str(error.get("message", "engine error"))
    kind = error.get("type", "")
    if kind == "exceed_context_size_error":
        tokens, context = _int_or_none(error.get("n_prompt_tokens")), _int_or_none(error.get("n_ctx"))
        return ContextOverflow(
            f"the input is {tokens} tokens, more than the context length "
            f"of {context} tokens; shorten it, raise num_ctx, or set truncate",
            prompt_tokens=tokens, context=context,
        )
    if kind == "invalid_request_error" or error.get("code") == 400:
        return from_engine(BadRequest(message))
    return _out_of_memory(message) or from_engine(EngineError(message))


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
