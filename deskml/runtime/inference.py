"""The inference API every dialect calls: chat, generate and embed as streams of core events.

This is where a model's Modelfile settings (SYSTEM, TEMPLATE, MESSAGE, PARAMETER) meet the
request, where defaults are filled in, and where a lease on a loaded model is held while the
engine streams.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import Any

from deskml.core.cache import CacheKind, ResponseCache
from deskml.core.context import current_record
from deskml.core.errors import BadRequest, ContextOverflow, EngineError
from deskml.core.options import DEFAULT_SAMPLING, SAMPLING_FIELDS
from deskml.core.speculation import SpeculativeMode
from deskml.core.types import (
    ChatMessage,
    ChatRequest,
    Done,
    EmbedRequest,
    EmbedResult,
    EngineRequest,
    Event,
    GenerateRequest,
    InferenceCommon,
    ResponseFormat,
    SamplingOptions,
    Timings,
    ollama_tool_calls,
)
from deskml.core.validate import check_unicode
from deskml.runtime import fim, gotemplate, tools
from deskml.runtime.admission import cache_identity, check_input_size
from deskml.runtime.lifecycle import Lease, ModelManager
from deskml.runtime.recording import note_input, recorded
from deskml.runtime.registry import ModelEntry, Registry
from deskml.runtime.scheduler import PRIORITY_LIVE
from deskml.runtime.service_models.tasks import ServiceTasks
from deskml.runtime.upstream.local import LocalModels
from deskml.runtime.upstream.router import RoutedModel, UpstreamRouter
from deskml.settings import Settings

log = logging.getLogger("deskml.runtime")

def model_sampling(entry: ModelEntry) -> SamplingOptions:
    """The PARAMETER lines of a model that are sampling options (num_ctx etc. are load options)."""
    params = {k: v for k, v in entry.manifest.parameters.items() if k in SAMPLING_FIELDS}
    return SamplingOptions(**params)


def resolved_sampling(entry: ModelEntry, request: InferenceCommon) -> SamplingOptions:
    """The sampling a request runs with: its own options over the Modelfile's over Ollama's defaults."""
    return request.options.merged_over(model_sampling(entry).merged_over(DEFAULT_SAMPLING))


class InferenceService:
    def __init__(
        self, settings: Settings, registry: Registry, manager: ModelManager, cache: ResponseCache | None = None,
        *, service_tasks: ServiceTasks | None = None, router: UpstreamRouter | None = None,
    ) -> None:
        """`cache`: the response cache (services/cache.py); None = every reply is fresh. `service_tasks`:
        embedding models that are service models (all-minilm, ...), not GGUFs. `router`: picks local or
        upstream backends (DESKML_UPSTREAMS_FILE)."""
        self.settings = settings
        self.registry = registry
        self.manager = manager
        self.cache = cache
        self.service_tasks = service_tasks
        self.router = router
        self.local = LocalModels(registry, service_tasks, forward_only=router is not None and settings.forward_only)
        self._fim_texts: dict[str, tuple[str, str, str] | None] = {}  # model file -> FIM token texts

    # public API --------------------------------------------------------------------------
    # chat and generate are plain functions returning the stream they pick, not generators re-yielding
    # it: a check that fails (Unicode, size, an unknown model) raises here, before anything streams, and
    # each token crosses one generator fewer.
    def chat(self, request: ChatRequest, *, priority: int = PRIORITY_LIVE) -> AsyncGenerator[Event, None]:
        check_unicode(request)  # every caller (dialects, batches, the web UI): no engine sees a lone surrogate
        def local(req: ChatRequest) -> AsyncGenerator[Event, None]:
            return self._admit("chat", req, lambda sampling: self._chat_fresh(req, priority, sampling))

        events = local(request) if self.router is None else self.router.stream("chat", request, local)
        return self._recorded(request, events)

    async def _chat_fresh(
        self, request: ChatRequest, priority: int, sampling: SamplingOptions | None
    ) -> AsyncGenerator[Event, None]:
        entry = self.registry.get(request.model)
        template = entry.manifest.template
        go_template = bool(template) and gotemplate.is_go_template(template or "")
        native = not go_template and tools.template_supports_tools(template or self._gguf_template(entry))
        plan = tools.plan(request, self._chat_messages(entry, request.messages), native)
        messages = plan.messages
        sampling = sampling or resolved_sampling(entry, request)
        if (plan.schema is not None and request.options.repeat_penalty is None
                and "repeat_penalty" not in entry.manifest.parameters):
            # A tool-call reply repeats what the prompt just said (key names, tool names, quotes),
            # which the default repeat penalty punishes: on SmolLM2-135M (f16 KV cache) it turned
            # a weather question's call into a plain answer. The request or Modelfile can still set one.
            sampling = sampling.model_copy(update={"repeat_penalty": 1.0})
        prepared = self._prepared(entry, request, sampling)
        if plan.schema is not None:  # a constrained tool-call reply: its schema replaces the request's format
            prepared.format = ResponseFormat(kind="json_schema", schema=plan.schema)
        if go_template:
            prepared.prompt = gotemplate.render_prompt(
                template or "", system=None, messages=[_template_message(m) for m in messages], tools=[]
            )
            run = self._run(entry, request, prepared, priority)
            async with aclosing(tools.planned_events(plan, run)) as events:
                async for event in events:
                    yield event
            return
        if plan.mode == "native":
            prepared.tools = plan.tools
            prepared.parallel_tool_calls = request.parallel_tool_calls
        if request.truncate:
            _drop_beyond(messages, self.manager.context_for(entry, request.num_ctx))
        while True:
            prepared.messages = list(messages)
            try:
                run = self._run(entry, request, prepared, priority)
                async with aclosing(tools.planned_events(plan, run)) as events:
                    async for event in events:
                        yield event
                return
            except ContextOverflow as overflow:
                if not request.truncate or not _drop_to_fit(messages, overflow):
                    raise

    async def _fim_tokens(self, entry: ModelEntry) -> tuple[str, str, str] | None:
        """The model's fill-in-the-middle token texts (read once per model file), or None."""
        try:
            info = self.registry.gguf_info(entry)
        except (OSError, ValueError):
            return None
        ids = fim.fim_token_ids(info)
        if ids is None:
            return None
        key = f"{entry.path}:{entry.digest}"
        if key not in self._fim_texts:  # the whole vocabulary is read: off the event loop
            self._fim_texts[key] = await asyncio.to_thread(fim.fim_token_texts, entry.path, ids)
        return self._fim_texts[key]

    def _gguf_template(self, entry: ModelEntry) -> str | None:
        try:
            return self.registry.gguf_info(entry).chat_template
        except (OSError, ValueError):
            return None

    def generate(self, request: GenerateRequest, *, priority: int = PRIORITY_LIVE) -> AsyncGenerator[Event, None]:
        check_unicode(request)
        def local(req: GenerateRequest) -> AsyncGenerator[Event, None]:
            return self._admit("generate", req, lambda sampling: self._generate_fresh(req, priority, sampling))

        routed = local(request) if self.router is None else self.router.stream("generate", request, local)
        return self._recorded(request, routed)

    async def _generate_fresh(
        self, request: GenerateRequest, priority: int, sampling: SamplingOptions | None
    ) -> AsyncGenerator[Event, None]:
        entry = self.registry.get(request.model)
        if request.images:
            raise BadRequest(f"model '{entry.name}' does not support images")
        fim_tokens = await self._fim_tokens(entry) if request.suffix else None
        if request.suffix and fim_tokens is None:
            raise BadRequest(f"model '{entry.name}' does not support insert")
        prepared = self._prepared(entry, request, sampling or resolved_sampling(entry, request))
        template = request.template or entry.manifest.template
        system = request.system if request.system is not None else entry.manifest.system
        go_template = bool(template) and gotemplate.is_go_template(template or "")

        def set_prompt(prompt: str) -> None:
            if fim_tokens is not None:
                prepared.prompt = fim.fim_prompt(fim_tokens, prompt, request.suffix or "")
            elif request.raw:
                prepared.prompt = prompt
            elif go_template:
                prepared.prompt = gotemplate.render_prompt(template or "", system=system, prompt=prompt)
            else:
                messages = [ChatMessage(role="system", content=system)] if system else []
                messages.append(ChatMessage(role="user", content=prompt))
                prepared.messages = messages

        prompt_text = request.prompt
        if request.truncate and fim_tokens is None:
            budget = self.manager.context_for(entry, request.num_ctx) * _MAX_CHARS_PER_TOKEN
            if len(prompt_text) > budget:  # cannot fit: the engine need not tokenise all of it to say so
                prompt_text = prompt_text[-budget:]
        set_prompt(prompt_text)
        while True:
            try:
                async with aclosing(self._run(entry, request, prepared, priority)) as events:
                    async for event in events:
                        yield event
                return
            except ContextOverflow as overflow:
                # Keep the end of the prompt (the question), as Ollama does when it truncates.
                if not request.truncate or len(prompt_text) < 64 or fim_tokens is not None:
                    raise
                prompt_text = prompt_text[_chars_to_cut(prompt_text, overflow) :]
                set_prompt(prompt_text)  # a template or system prompt stays whole around the cut prompt

    async def load(self, name: str, keep_alive: float | None, num_ctx: int | None = None, *,
                   num_gpu: int | None = None, main_gpu: int | None = None,
                   speculative: SpeculativeMode | None = None) -> Done:
        if self.router is not None and not self.serves_locally(name, "chat") and self.router.knows(name):
            return Done(reason="unload" if keep_alive == 0 else "load", model=name)  # upstreams load on use
        model, load_ns = await self.manager.ensure_loaded(name, keep_alive, num_ctx=num_ctx, num_gpu=num_gpu,
                                                          main_gpu=main_gpu, speculative=speculative)
        if keep_alive == 0:
            await self.manager.unload(name)
            return Done(reason="unload", model=model.name)
        return Done(reason="load", model=model.name, timings=Timings(load_ns=load_ns, total_ns=load_ns))

    async def unload(self, name: str) -> Done:
        entry = self.registry.get(name)
        await self.manager.unload(entry.name)
        return Done(reason="unload", model=entry.name)

    def serves_locally(self, name: str, task: str) -> bool:
        """Whether this node answers `name` itself: a GGUF, or an embedding service model.
        Never on a node that only forwards (DESKML_FORWARD_ONLY)."""
        return self.local.serves(name, task)

    def canonical_name(self, name: str) -> str:
        """The name deskml's alias rules give `name` (`smollm2` -> `smollm2:135m`), for matching upstreams."""
        return self.local.canonical(name)

    def routed_models(self) -> list[RoutedModel]:
        """Models offered by upstreams (for /api/tags and /v1/models); empty without a router."""
        return self.router.models() if self.router is not None else []

    async def embed(self, request: EmbedRequest, *, priority: int = PRIORITY_LIVE) -> EmbedResult:
        check_unicode(request)
        if self.router is not None:
            return await self.router.embed(request, lambda req: self._embed_local(req, priority))
        return await self._embed_local(request, priority)

    async def _embed_local(self, request: EmbedRequest, priority: int) -> EmbedResult:
        started = time.perf_counter_ns()
        check_input_size(request, self.settings.max_prompt_chars)
        if self.service_tasks is not None and self.service_tasks.serves_embedding(request.model):
            return await self.service_tasks.embed(request)
        if self.settings.history and self.settings.history_content:
            note_input(request)
        if not request.inputs:
            entry = self.registry.get(request.model)
            _, load_ns = await self.manager.ensure_loaded(request.model, request.keep_alive, kind="embed",
                                                          num_gpu=request.num_gpu, main_gpu=request.main_gpu)
            return EmbedResult(model=entry.name, embeddings=[], timings=Timings(load_ns=load_ns))
        async with self.manager.lease(
            request.model, kind="embed", num_ctx=request.num_ctx, keep_alive=request.keep_alive, priority=priority,
            num_gpu=request.num_gpu, main_gpu=request.main_gpu,
        ) as lease:
            inputs = list(request.inputs)
            for _ in range(12):
                try:
                    vectors, prompt_tokens = await lease.model.engine.embed(inputs)
                    break
                except ContextOverflow:
                    # Ollama's truncate keeps the start of an over-long input; cut the longest by
                    # a quarter until every input fits the context.
                    longest = max(range(len(inputs)), key=lambda i: len(inputs[i]))
                    if not request.truncate or len(inputs[longest]) < 16:
                        raise
                    inputs[longest] = inputs[longest][: len(inputs[longest]) * 3 // 4]
            else:
                raise ContextOverflow("input too long for the model's context")
            if request.dimensions:
                vectors = [_renormalize(v[: request.dimensions]) for v in vectors]
            timings = Timings(
                load_ns=lease.load_ns, queue_ns=lease.queue_ns, prompt_eval_count=prompt_tokens,
                total_ns=time.perf_counter_ns() - started,
            )
            note_timings(timings)
            record = current_record()
            if record is not None:
                record.model, record.backend = lease.model.name, "llama.cpp"
            return EmbedResult(
                model=lease.model.name, embeddings=vectors,
                prompt_tokens=prompt_tokens, timings=timings,
            )

    # internals ---------------------------------------------------------------------------
    def _recorded(
        self, request: ChatRequest | GenerateRequest, events: AsyncGenerator[Event, None]
    ) -> AsyncGenerator[Event, None]:
        """Note input and output on the request record when the history keeps them."""
        if self.settings.history and self.settings.history_content:
            return recorded(request, events)
        return events

    def _admit(
        self, kind: CacheKind, request: ChatRequest | GenerateRequest,
        produce: Callable[[SamplingOptions | None], AsyncGenerator[Event, None]],
    ) -> AsyncGenerator[Event, None]:
        """Size-check the request, then answer it through the response cache when one is set. `produce`
        gets the resolved sampling when the cache needed it first (None: it resolves its own)."""
        check_input_size(request, self.settings.max_prompt_chars)
        if self.cache is None:
            return produce(None)
        entry = self.registry.get(request.model)
        sampling = resolved_sampling(entry, request)
        return self.cache.stream(kind, cache_identity(entry, self.settings.num_ctx), request, sampling,
                                 lambda: produce(sampling))

    def _chat_messages(self, entry: ModelEntry, messages: list[ChatMessage]) -> list[ChatMessage]:
        preset = [ChatMessage.model_validate(m) for m in entry.manifest.messages]
        result = [*preset, *messages]
        if entry.manifest.system and not any(m.role == "system" for m in result):
            result.insert(0, ChatMessage(role="system", content=entry.manifest.system))
        return result

    @staticmethod
    def _prepared(entry: ModelEntry, request: InferenceCommon, sampling: SamplingOptions) -> EngineRequest:
        """The engine request for `request`, less its messages or prompt (the caller sets those)."""
        return EngineRequest(model=entry.name, sampling=sampling, format=request.format,
                             logprobs=request.logprobs, top_logprobs=request.top_logprobs)

    async def _run(
        self, entry: ModelEntry, request: InferenceCommon, prepared: EngineRequest, priority: int
    ) -> AsyncGenerator[Event, None]:
        started = time.perf_counter_ns()
        record = current_record()
        sent = 0  # streamed events: about one token each
        done: Done | None = None
        try:
            async with self.manager.lease(
                entry.name, num_ctx=request.num_ctx, keep_alive=request.keep_alive, priority=priority,
                num_gpu=request.num_gpu, main_gpu=request.main_gpu, speculative=request.speculative,
            ) as lease:
                if record is not None:
                    record.model, record.backend = entry.name, "llama.cpp"
                # aclosing: when our consumer goes away, the engine stream must stop now (freeing the
                # slot), not whenever the garbage collector finalises it.
                async with aclosing(lease.model.engine.stream(prepared)) as events:
                    async for event in events:
                        if isinstance(event, Done):
                            done = event
                            break
                        sent += 1
                        if record is not None and record.ttft_ns is None:
                            record.ttft_ns = time.perf_counter_ns() - started
                        yield event
                if done is None:
                    raise EngineError("the engine ended the reply without finishing it")
                self._finish_timings(done, lease, started)
                note_timings(done.timings)
        finally:
            if done is None and record is not None:
                # Cut short (client gone, cancelled, engine error): the tokens generated still count,
                # for the hourly token budget and the history, as the engine's final timings never came.
                record.completion_tokens += sent
        # keep_alive 0 has already set the model to expire now: the reaper unloads it.
        yield done

    @staticmethod
    def _finish_timings(done: Done, lease: Lease, started: int) -> None:
        done.timings.load_ns = lease.load_ns
        done.timings.queue_ns = lease.queue_ns
        done.timings.total_ns = time.perf_counter_ns() - started


def note_timings(timings: Timings) -> None:
    """Copy a finished request's timings into the request record, for history and metrics."""
    record = current_record()
    if record is None:
        return
    record.queue_ns += timings.queue_ns
    record.load_ns += timings.load_ns
    record.prompt_eval_ns += timings.prompt_eval_ns
    record.eval_ns += timings.eval_ns
    record.prompt_tokens += timings.prompt_tokens
    record.completion_tokens += timings.eval_count
    record.draft_tokens += timings.draft_tokens
    record.draft_accepted_tokens += timings.draft_accepted_tokens


def _template_message(message: ChatMessage) -> dict[str, Any]:
    return {"role": message.role, "content": message.content,
            "tool_calls": ollama_tool_calls(message.tool_calls, numbered=False)}


# Tokenisers put a few characters in a token (about 4 for English); no ordinary text averages more than
# this, so text longer than the context times this cannot fit, and truncation drops it before the first
# try: the engine tokenises every message it is given (10,000 messages: 10 s) just to say it is too long.
_MAX_CHARS_PER_TOKEN = 16


def _drop_beyond(messages: list[ChatMessage], context: int) -> None:
    """Drop the oldest non-system messages (never the last) beyond what `context` tokens could hold."""
    budget = context * _MAX_CHARS_PER_TOKEN
    if sum(_message_chars(m) for m in messages) <= budget:
        return
    used = sum(_message_chars(m) for m in messages if m.role == "system") + _message_chars(messages[-1])
    keep_from = len(messages) - 1
    for index in range(len(messages) - 2, -1, -1):
        if messages[index].role == "system":
            continue
        used += _message_chars(messages[index])
        if used > budget:
            break
        keep_from = index
    messages[:] = [m for i, m in enumerate(messages) if i >= keep_from or m.role == "system"]


# Template tokens around each message (role markers, separators), in characters of text, for the estimate below.
_MESSAGE_OVERHEAD_CHARS = 16


def _reply_room(context: int) -> int:
    """Tokens a truncated prompt leaves free for the reply."""
    return max(16, context // 16)


def _message_chars(message: ChatMessage) -> int:
    return (len(message.content) + len(message.thinking or "") + _MESSAGE_OVERHEAD_CHARS
            + sum(len(call.name) + len(call.arguments) for call in message.tool_calls))


def _drop_to_fit(messages: list[ChatMessage], overflow: ContextOverflow) -> bool:
    """Drop the oldest non-system messages (never the last) until the rest should fit; False when none can go.

    The failed try told how many tokens the prompt is; each message's share is estimated from its
    characters, so one cut does what dropping one message per try did with a full re-tokenisation each
    (10,000 messages: minutes). A short estimate costs one more try, which measures again."""
    droppable = [i for i, m in enumerate(messages[:-1]) if m.role != "system"]
    if not droppable:
        return False
    tokens, context = overflow.prompt_tokens, overflow.context
    if not tokens or not context:  # no counts from the engine: one message at a time
        del messages[droppable[0]]
        return True
    excess = tokens - context + _reply_room(context)
    per_char = tokens / max(1, sum(_message_chars(m) for m in messages))
    cut: set[int] = set()
    removed = 0.0
    for index in droppable:
        if removed >= excess:
            break
        cut.add(index)
        removed += _message_chars(messages[index]) * per_char
    messages[:] = [m for i, m in enumerate(messages) if i not in cut]
    return True


def _chars_to_cut(prompt: str, overflow: ContextOverflow) -> int:
    """How many leading characters of a too-long prompt to drop, from the engine's token count."""
    tokens, context = overflow.prompt_tokens, overflow.context
    if not tokens or not context:
        return len(prompt) // 4
    excess = tokens - context + _reply_room(context)
    return min(len(prompt), max(16, int(excess * len(prompt) / tokens) + 1))


def _renormalize(vector: list[float]) -> list[float]:
    norm = sum(v * v for v in vector) ** 0.5
    return [v / norm for v in vector] if norm else vector
