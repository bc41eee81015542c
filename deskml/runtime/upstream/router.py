"""The smart router: which backend answers a request (the seed's SmartBackendRouter and
HybridAIService, done once on the server for every client).

A request's candidate models come from the first matching rule (task type, prompt length, model glob)
or are just the requested model, followed by its fallbacks. Each candidate expands to the backends
serving it: this node ("local", unless it only forwards) and the upstreams offering that name — by
their listed names, the same names after deskml's own alias rules (`smollm2` is `smollm2:135m`), or
because a deskml node said it accepts the name (`/api/show`) — ordered by the strategy (fewest requests
in flight, or local first). Backends are tried in order until one has answered without the client
having received a byte: a stream goes out with its first event, a whole (non-streaming) reply only
once complete, so a failure before then is invisible and the next backend answers; after it, the stream
ends with an error event. Health checks and a circuit breaker per upstream keep dead ones out of the
way and bring them back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from prometheus_client import CollectorRegistry

from deskml.core.context import current_record, reply_is_whole
from deskml.core.errors import (
    BadRequest,
    Busy,
    DeskmlError,
    EngineError,
    LoopDetected,
    ModelLoadError,
    ModelNotFound,
    UpstreamError,
    UpstreamUnavailable,
)
from deskml.core.hops import VIA_HEADER, current_via
from deskml.core.trace import HEALTH_CHECK_HEADER, upstream_headers
from deskml.core.types import ChatRequest, Done, EmbedRequest, EmbedResult, Event, GenerateRequest
from deskml.engines.remote import RemoteEngine, RemoteModel
from deskml.runtime import names
from deskml.runtime.upstream.breaker import Breaker
from deskml.runtime.upstream.config import RoutingConfig, UpstreamConfig, model_key
from deskml.runtime.upstream.metrics import RouterMetrics

log = logging.getLogger("deskml.router")

Task = Literal["chat", "generate", "embed"]
Request = ChatRequest | GenerateRequest | EmbedRequest
LOCAL = "local"
T = TypeVar("T")

# Local faults another backend may not share: a full queue, a model that fails to load, an engine crash.
_LOCAL_RETRYABLE = (Busy, EngineError, ModelLoadError, ModelNotFound)
# Names a deskml upstream was asked about (accepted or not) are remembered until its model list changes;
# past this many the memory starts over, so clients sending made-up names cannot grow it without bound.
_PROBED_LIMIT = 512
# A deskml node leaves its router's health checks out of its history (deskml/core/trace.py).
_HEALTH_HEADERS = {HEALTH_CHECK_HEADER: "1"}


@dataclass(frozen=True)
class Target:
    backend: str  # "local" or an upstream's name
    model: str  # the model's name on that backend
    name: str  # the name the client sees


@dataclass
class Upstream:
    config: UpstreamConfig
    engine: RemoteEngine
    breaker: Breaker
    models: dict[str, tuple[str, RemoteModel]] = field(default_factory=dict)  # key -> (shown name, model)
    up: bool | None = None  # None until the first health check
    error: str | None = None
    checked_at: float | None = None
    in_flight: int = 0
    probed: dict[str, bool] = field(default_factory=dict)  # model key -> the node accepts that name (/api/show)

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(frozen=True)
class RoutedModel:
    name: str  # as clients see it (prefix + upstream name)
    upstream: str
    kind: str
    model: RemoteModel


def task_types(task: Task, request: Request) -> set[str]:
    tasks: set[str] = {task}
    if isinstance(request, ChatRequest):
        if request.tools:
            tasks.add("tools")
        if any(m.images for m in request.messages):
            tasks.add("vision")
    if isinstance(request, GenerateRequest) and request.images:
        tasks.add("vision")
    if not isinstance(request, EmbedRequest) and request.format is not None:
        tasks.add("json")
    return tasks


def prompt_chars(request: Request) -> int:
    if isinstance(request, ChatRequest):
        return sum(len(m.content) for m in request.messages)
    if isinstance(request, GenerateRequest):
        return len(request.prompt) + len(request.system or "")
    return sum(len(text) for text in request.inputs)


class UpstreamRouter:
    def __init__(
        self, config: RoutingConfig, node_id: str, has_local: Callable[[str, Task], bool],
        registry: CollectorRegistry | None = None, canonical: Callable[[str], str] | None = None,
    ) -> None:
        """`has_local(name, task)`: whether this node answers `name` itself (always False on a node that
        only forwards). `canonical(name)`: the name deskml's alias rules give `name` (`smollm2` ->
        `smollm2:135m`), so a name a node accepts matches what that node lists."""
        self.config = config
        self.node_id = node_id
        self.has_local = has_local
        self.canonical = canonical or (lambda name: name)
        settings = config.router
        self.upstreams: dict[str, Upstream] = {}
        for item in config.upstreams:
            engine = RemoteEngine(item.name, item.kind, item.url, item.api_key(), timeout=item.timeout,
                                  connect_timeout=item.connect_timeout, verify=item.verify_tls)
            breaker = Breaker(settings.failure_threshold, settings.open_seconds)
            self.upstreams[item.name] = Upstream(item, engine, breaker)
        self.local_in_flight = 0
        self.metrics = RouterMetrics(registry, self.status)
        self._health: asyncio.Task[None] | None = None

    # lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Check every upstream once (so its models are known before the first request), then keep checking."""
        await self.refresh()
        for upstream in self.upstreams.values():
            if upstream.error:
                log.warning("upstream %s (%s at %s) is not usable: %s", upstream.name, upstream.config.kind,
                            upstream.config.url, upstream.error)
        self._health = asyncio.create_task(self._health_loop(), name="deskml-router-health")

    async def close(self) -> None:
        if self._health is not None:
            self._health.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health
        await asyncio.gather(*(u.engine.close() for u in self.upstreams.values()), return_exceptions=True)

    async def refresh(self) -> None:
        await asyncio.gather(*(self._check(u) for u in self.upstreams.values()))

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.router.health_interval)
            try:
                await self.refresh()
            except Exception:  # a health check must never end the loop
                log.exception("upstream health check failed")

    async def _check(self, upstream: Upstream) -> None:
        config = upstream.config
        upstream.checked_at = time.time()
        if config.missing_key():
            upstream.up, upstream.error = False, f"environment variable {config.api_key_env} is not set"
            upstream.breaker.trip()
            return
        try:
            listed = await upstream.engine.list_models(timeout=min(5.0, self.config.router.health_interval),
                                                       headers=_HEALTH_HEADERS if config.kind == "deskml" else None)
        except DeskmlError as exc:
            upstream.up, upstream.error = False, exc.message
            upstream.breaker.trip()
            return
        upstream.up, upstream.error = True, None
        upstream.breaker.healthy()
        wanted = config.models or [m.name for m in listed]
        by_name = {m.name: m for m in listed}
        models: dict[str, tuple[str, RemoteModel]] = {}
        for remote_name in wanted:
            shown = config.prefix + remote_name
            models[model_key(shown)] = (shown, by_name.get(remote_name, RemoteModel(remote_name)))
        if models.keys() != upstream.models.keys():
            upstream.probed = {}  # what it accepts may have changed with what it lists: ask again
        upstream.models = models

    # listing and status ----------------------------------------------------------------------
    def models(self) -> list[RoutedModel]:
        out = []
        for upstream in self.upstreams.values():
            for shown, model in upstream.models.values():
                out.append(RoutedModel(shown, upstream.name, upstream.config.kind, model))
        return out

    def knows(self, name: str) -> bool:
        return any(self._offer(u, name) is not None for u in self.upstreams.values())

    def _offer(self, upstream: Upstream, name: str) -> tuple[str, str] | None:
        """(the model's name on `upstream`, the name shown to the client) when it serves `name`, else None.

        Matched by the name it lists, then by that name under deskml's alias rules (a deskml node
        resolves `smollm2` to `smollm2:135m` and lists only the latter), then by what the node said
        when asked (`/api/show`, see `_ask`)."""
        entry = upstream.models.get(model_key(name))
        if entry is not None:
            return entry[1].name, entry[0]
        prefix = upstream.config.prefix
        if not name.lower().startswith(prefix.lower()) or len(name) == len(prefix):
            return None
        remote = name[len(prefix):]
        with contextlib.suppress(DeskmlError):
            entry = upstream.models.get(model_key(prefix + self.canonical(remote)))
            if entry is not None:
                return entry[1].name, entry[0]
        if upstream.probed.get(model_key(remote)):
            return remote, name  # the node resolves the name itself
        return None

    async def _ask(self, names_: list[str]) -> None:
        """Ask each deskml upstream about the names none of its listed names match, once per model list:
        a node may accept names (its aliases, a newer version's) that this node cannot work out."""
        asks = []
        for upstream in self.upstreams.values():
            if upstream.config.kind != "deskml" or not upstream.up or not upstream.breaker.available():
                continue
            prefix = upstream.config.prefix
            for name in names_:
                if not name.lower().startswith(prefix.lower()) or len(name) == len(prefix):
                    continue
                remote = name[len(prefix):]
                key = model_key(remote)
                if key not in upstream.probed and self._offer(upstream, name) is None:
                    asks.append(self._ask_one(upstream, remote, key))
        if asks:
            await asyncio.gather(*asks)

    async def _ask_one(self, upstream: Upstream, remote: str, key: str) -> None:
        timeout = min(5.0, self.config.router.health_interval)
        try:
            accepted = await upstream.engine.accepts(remote, self._headers(upstream), timeout=timeout)
        except DeskmlError as exc:
            log.info("could not ask upstream %s about '%s': %s", upstream.name, remote, exc.message)
            return  # unknown, not refused: ask again next time
        if len(upstream.probed) >= _PROBED_LIMIT:
            upstream.probed = {}
        upstream.probed[key] = accepted

    def status(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = [{"name": LOCAL, "kind": "local", "in_flight": self.local_in_flight}]
        for u in self.upstreams.values():
            items.append({
                "name": u.name, "kind": u.config.kind, "url": u.config.url, "up": bool(u.up), "error": u.error,
                "circuit": u.breaker.state, "circuit_opened": u.breaker.opened_count, "in_flight": u.in_flight,
                "node_id": u.engine.node_id, "models": sorted(shown for shown, _ in u.models.values()),
                "checked_at": u.checked_at,
            })
        return items

    # planning --------------------------------------------------------------------------------
    def candidates(self, task: Task, request: Request) -> list[str]:
        """The model names to try, in order: a matching rule's (or the requested one), then fallbacks."""
        tasks, chars = task_types(task, request), prompt_chars(request)
        candidates = [request.model]
        for rule in self.config.rules:
            if rule.matches(request.model, tasks, chars):
                candidates = list(rule.to)
                log.debug("rule %s sends %s to %s", rule.name or "#", request.model, candidates)
                break
        for name in list(candidates):
            candidates.extend(self.config.fallbacks_for(name))
        return candidates

    async def targets(self, task: Task, request: Request) -> list[Target]:
        """plan(), after asking deskml upstreams about names their lists do not show."""
        await self._ask(self.candidates(task, request))
        return self.plan(task, request)

    def plan(self, task: Task, request: Request) -> list[Target]:
        """The backends to try, in order. Raises ModelNotFound, or LoopDetected when only loops remain."""
        candidates = self.candidates(task, request)
        via = current_via()
        targets: list[Target] = []
        looped: list[str] = []
        seen: set[tuple[str, str]] = set()
        for name in candidates:
            group: list[Target] = []
            if self.has_local(name, task):
                group.append(Target(LOCAL, name, name))
            for upstream in self.upstreams.values():
                offer = self._offer(upstream, name)
                if offer is None:
                    continue
                if upstream.config.kind == "deskml" and self._would_loop(upstream, via):
                    looped.append(upstream.name)
                    continue
                group.append(Target(upstream.name, *offer))
            for target in self._order(group):
                if (target.backend, target.model) not in seen:
                    seen.add((target.backend, target.model))
                    targets.append(target)
        if targets:
            return targets
        if looped:
            path = " -> ".join([*via, self.node_id])
            raise LoopDetected(
                f"routing loop: '{request.model}' is only offered by node(s) this request already passed "
                f"through ({', '.join(looped)}); path {path}. Check the upstreams files of these nodes."
            )
        names.normalize(request.model)  # an invalid name is a 400, as without the router
        raise ModelNotFound(request.model)

    def _would_loop(self, upstream: Upstream, via: tuple[str, ...]) -> bool:
        if not via:
            return False
        if self.node_id in via or len(via) >= self.config.router.max_hops:
            return True  # this request came back here, or has travelled far enough: serve it, don't pass it on
        return upstream.engine.node_id is not None and upstream.engine.node_id in via

    def _order(self, group: list[Target]) -> list[Target]:
        usable = [t for t in group if t.backend == LOCAL or self.upstreams[t.backend].breaker.available()]
        resting = [t for t in group if t not in usable]
        if self.config.router.strategy == "least_outstanding":
            position = {t: i for i, t in enumerate(usable)}
            usable.sort(key=lambda t: (self._in_flight(t.backend), position[t]))
        return usable + resting  # an open circuit is still tried last: it may be the only way

    def _in_flight(self, backend: str) -> int:
        return self.local_in_flight if backend == LOCAL else self.upstreams[backend].in_flight

    # running ---------------------------------------------------------------------------------
    def stream(
        self, task: Literal["chat", "generate"], request: ChatRequest | GenerateRequest,
        local: Callable[[Any], AsyncGenerator[Event, None]],
    ) -> AsyncGenerator[Event, None]:
        return self._stream(task, request, local)

    async def _stream(
        self, task: Literal["chat", "generate"], request: ChatRequest | GenerateRequest,
        local: Callable[[Any], AsyncGenerator[Event, None]],
    ) -> AsyncGenerator[Event, None]:
        whole = reply_is_whole()  # read before anything runs: it is the consumer's context
        targets = await self.targets(task, request)
        if _only_local(targets, request):
            events = local(request)  # nothing to route: the local path exactly as without a router
        else:
            def attempt(target: Target, upstream: Upstream | None) -> AsyncGenerator[Event, None]:
                if upstream is None:
                    return local(request if target.model == request.model else request.model_copy(
                        update={"model": target.model}))
                return upstream.engine.stream(request.model_copy(update={"model": target.model}),
                                              headers=self._headers(upstream))

            events = self._failover(request.model, targets, attempt, whole=whole)
        async with aclosing(events) as items:
            async for event in items:
                yield event

    async def embed(
        self, request: EmbedRequest, local: Callable[[EmbedRequest], Awaitable[EmbedResult]]
    ) -> EmbedResult:
        targets = await self.targets("embed", request)
        if _only_local(targets, request):
            return await local(request)

        async def attempt(target: Target, upstream: Upstream | None) -> AsyncGenerator[EmbedResult, None]:
            if upstream is None:
                yield await local(request.model_copy(update={"model": target.model}))
            else:
                yield await upstream.engine.embed(target.model, request, self._headers(upstream))

        async with aclosing(self._failover(request.model, targets, attempt, whole=True)) as results:
            async for result in results:
                return result
        raise _exhausted(request.model, [])  # a backend ended without a result: not one of ours

    async def _failover(
        self, model: str, targets: list[Target], attempt: Callable[[Target, Upstream | None], AsyncGenerator[T, None]],
        *, whole: bool,
    ) -> AsyncGenerator[T, None]:
        """Try `targets` in order until one answers. The cut-off is the client's first byte: a stream's
        first event goes out at once, so a failure before it moves on to the next backend; a whole reply
        (`whole`: the client gets nothing until it is complete) is held here until complete, so a failure
        anywhere in it moves on. After the cut-off a failure reaches the client (an error event)."""
        failures: list[str] = []
        for target in targets:
            upstream = self.upstreams.get(target.backend)
            if upstream is not None and not upstream.breaker.allow():
                failures.append(f"{target.backend}: circuit open ({upstream.error or 'recent failures'})")
                continue
            items = attempt(target, upstream)
            started = time.perf_counter()
            first_at: float | None = None
            held: list[T] = []
            self._begin(target)
            try:
                async for item in items:
                    first_at = first_at or time.perf_counter()
                    held.append(item)
                    if not whole:
                        break  # a stream is committed with its first event
            except DeskmlError as exc:
                await _close(items)
                retry = _retryable(exc, target)
                self._end(target, "failed_mid_reply" if held else "failed_before_reply",
                          verdict=False if retry else None)
                if not retry:
                    raise
                failures.append(f"{target.backend}: {exc.message}")
                log.warning("backend %s failed before the client had a byte of %s; trying the next: %s",
                            target.backend, target.name, exc.message)
                continue
            except BaseException:
                await _close(items)
                self._end(target, "cancelled", verdict=None)
                raise
            self.metrics.first_event(target.backend, (first_at or time.perf_counter()) - started)
            self._note_backend(target, (first_at or time.perf_counter()) - started)
            outcome, verdict = "cancelled", None
            try:
                for item in held:
                    yield self._shown(item, target)
                if not whole:
                    async for item in items:
                        yield self._shown(item, target)
                outcome, verdict = "ok", True
            except DeskmlError:
                outcome, verdict = "failed_mid_reply", False
                raise
            finally:
                await _close(items)
                self._end(target, outcome, verdict=verdict)
            return
        raise _exhausted(model, failures)

    # bookkeeping -----------------------------------------------------------------------------
    def _headers(self, upstream: Upstream) -> dict[str, str] | None:
        if upstream.config.kind != "deskml":
            return None
        # The node records the same request id and, as a claim, the caller this node authenticated.
        return {VIA_HEADER: ",".join([*current_via(), self.node_id]), **upstream_headers(current_record())}

    def _begin(self, target: Target) -> None:
        if target.backend == LOCAL:
            self.local_in_flight += 1
        else:
            self.upstreams[target.backend].in_flight += 1

    def _end(self, target: Target, outcome: str, *, verdict: bool | None = True) -> None:
        """`verdict`: True/False tells the breaker the backend worked/failed; None says nothing about it."""
        self.metrics.outcome(target.backend, outcome)
        if target.backend == LOCAL:
            self.local_in_flight -= 1
            return
        upstream = self.upstreams[target.backend]
        upstream.in_flight -= 1
        if verdict is True:
            upstream.breaker.success()
        elif verdict is False:
            upstream.breaker.failure()
            if upstream.breaker.state == "open":
                log.warning("circuit for upstream %s is open for %.0f s", upstream.name,
                            self.config.router.open_seconds)
        else:
            upstream.breaker.release()

    def _note_backend(self, target: Target, first_event_s: float) -> None:
        record = current_record()
        if record is None or target.backend == LOCAL:
            return  # the local path notes model, backend and timings itself
        record.model = target.name
        record.backend = f"upstream:{target.backend}"
        if record.ttft_ns is None:
            record.ttft_ns = int(first_event_s * 1e9)

    @staticmethod
    def _shown(event: T, target: Target) -> T:
        if isinstance(event, EmbedResult):
            record = current_record()
            if record is not None and target.backend != LOCAL:
                record.prompt_tokens += event.prompt_tokens
            return event.model_copy(update={"model": target.name})
        if isinstance(event, Done):
            if target.backend != LOCAL:
                record = current_record()
                if record is not None:
                    t = event.timings
                    record.prompt_tokens += t.prompt_tokens
                    record.completion_tokens += t.eval_count
                    record.prompt_eval_ns += t.prompt_eval_ns
                    record.eval_ns += t.eval_ns
            return event.model_copy(update={"model": target.name})
        return event


def _only_local(targets: list[Target], request: Request) -> bool:
    return len(targets) == 1 and targets[0].backend == LOCAL and targets[0].model == request.model


def _retryable(exc: DeskmlError, target: Target) -> bool:
    if isinstance(exc, LoopDetected | BadRequest):
        return False
    if isinstance(exc, UpstreamError):
        return True  # unreachable, refused, or gave up before its first byte
    return target.backend == LOCAL and isinstance(exc, _LOCAL_RETRYABLE)


def _exhausted(model: str, failures: list[str]) -> UpstreamUnavailable:
    detail = "; ".join(failures) or "no backend available"
    return UpstreamUnavailable(f"no backend could answer '{model}': {detail}", retry_after=5.0)


async def _close(events: AsyncGenerator[Any, None]) -> None:
    with contextlib.suppress(BaseException):
        await events.aclose()
