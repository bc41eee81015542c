"""Exact response cache for deterministic requests (temperature 0 or a fixed seed).

The key is a SHA-256 over the model's identity (weights digest, Modelfile, server context default)
and the whole normalised core request — messages, options, format, tools — never the prompt alone.
What is stored is the reply's core event stream, so a hit is replayed through the same dialect
rendering as a fresh reply: it streams, collects and ends exactly like one. Storage is an LRU in
process memory, or Redis (shared by several processes; eviction then follows Redis' own policy).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable
from typing import Any, Protocol

from pydantic import BaseModel, TypeAdapter

from deskml.core.cache import CacheKind, is_deterministic
from deskml.core.context import RequestRecord, current_record
from deskml.core.types import Done, Event, SamplingOptions

log = logging.getLogger("deskml.cache")

_EVENTS = TypeAdapter(list[Event])
_FORMAT = 1  # bump when the stored layout or the key recipe changes
_NOT_IN_KEY = {"keep_alive"}  # how long the model stays loaded does not change the reply


class CacheStore(Protocol):
    async def get(self, key: str) -> bytes | None: ...
    async def put(self, key: str, value: bytes, ttl: float) -> None: ...
    async def clear(self) -> None: ...
    async def close(self) -> None: ...


class MemoryStore:
    """LRU by entry count and total bytes, with a TTL per entry."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max(1, max_entries)
        self.max_bytes = max(1, max_bytes)
        self.bytes = 0
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    async def get(self, key: str) -> bytes | None:
        item = self._items.get(key)
        if item is None:
            return None
        expires, value = item
        if expires <= time.monotonic():
            self._drop(key)
            return None
        self._items.move_to_end(key)
        return value

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        if len(value) > self.max_bytes // 8:
            return  # one huge reply must not flush everything else
        self._drop(key)
        self._items[key] = (time.monotonic() + ttl, value)
        self.bytes += len(value)
        while len(self._items) > self.max_entries or self.bytes > self.max_bytes:
            self._drop(next(iter(self._items)))

    def _drop(self, key: str) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self.bytes -= len(item[1])

    async def clear(self) -> None:
        self._items.clear()
        self.bytes = 0

    async def close(self) -> None:
        await self.clear()


class RedisStore:
    def __init__(self, url: str, prefix: str = "deskml:cache:") -> None:
        import redis.asyncio as aioredis

        self.prefix = prefix
        self.client = aioredis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5)

    async def get(self, key: str) -> bytes | None:
        value = await self.client.get(self.prefix + key)
        if isinstance(value, str):  # not with this client (no decode_responses): redis types get() as bytes or str
            return value.encode()
        return bytes(value) if value is not None else None

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        await self.client.set(self.prefix + key, value, px=max(1, int(ttl * 1000)))

    async def clear(self) -> None:
        async for name in self.client.scan_iter(match=self.prefix + "*", count=500):
            await self.client.delete(name)

    async def close(self) -> None:
        await self.client.aclose()


def _plain(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):  # images: their hash stands for them in the key
        return "sha256:" + hashlib.sha256(value).hexdigest()
    return str(value)


def cache_key(kind: CacheKind, identity: dict[str, Any], request: BaseModel) -> str:
    body = request.model_dump(exclude=_NOT_IN_KEY)
    material = json.dumps(
        {"v": _FORMAT, "kind": kind, "model": identity, "request": body},
        sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_plain,
    )
    return hashlib.sha256(material.encode()).hexdigest()


class ResponseCacheService:
    """Implements core.cache.ResponseCache for the inference service."""

    def __init__(self, store: CacheStore, ttl: float) -> None:
        self.store = store
        self.ttl = ttl
        self._failed_at = 0.0

    def stream(
        self, kind: CacheKind, identity: dict[str, Any], request: BaseModel, sampling: SamplingOptions,
        produce: Callable[[], AsyncGenerator[Event, None]],
    ) -> AsyncGenerator[Event, None]:
        record = current_record()
        mode = record.extra.get("cache_mode") if record is not None else None
        if mode == "off" or not is_deterministic(sampling):
            return produce()  # never cached: the engine's own stream, without a pass-through hop per token
        return self._cached(kind, identity, request, produce, record, mode)

    async def _cached(
        self, kind: CacheKind, identity: dict[str, Any], request: BaseModel,
        produce: Callable[[], AsyncGenerator[Event, None]], record: RequestRecord | None, mode: Any,
    ) -> AsyncGenerator[Event, None]:
        key = cache_key(kind, identity, request)
        if mode != "refresh":
            stored = await self._get(key)
            if stored is not None:
                if record is not None:
                    record.cache, record.model, record.backend = "hit", identity.get("name"), "cache"
                async for event in self._replay(stored):
                    yield event
                return
        if record is not None:
            record.cache = "miss"
        seen: list[Event] = []
        finished = False
        async with contextlib.aclosing(produce()) as events:
            async for event in events:
                seen.append(event)
                if isinstance(event, Done) and event.reason in {"stop", "length", "tool_calls"}:
                    finished = True
                yield event
        if finished:
            await self._put(key, _EVENTS.dump_json(seen))

    async def _replay(self, stored: list[Event]) -> AsyncGenerator[Event, None]:
        started = time.perf_counter_ns()
        record = current_record()
        for event in stored:
            if record is not None and record.ttft_ns is None and not isinstance(event, Done):
                record.ttft_ns = time.perf_counter_ns() - started
            if isinstance(event, Done):
                # Token counts and generation times are those of the run that made the reply (clients
                # divide by them); nothing was loaded or queued for this one.
                event.timings.load_ns = event.timings.queue_ns = 0
                event.timings.total_ns = time.perf_counter_ns() - started
            yield event
            await asyncio.sleep(0)  # a replay still yields to other requests between events

    async def _get(self, key: str) -> list[Event] | None:
        try:
            raw = await self.store.get(key)
            return _EVENTS.validate_json(raw) if raw is not None else None
        except Exception as exc:  # a cache outage or a stale layout is a miss, never a failure
            self._warn(exc)
            return None

    async def _put(self, key: str, value: bytes) -> None:
        try:
            await self.store.put(key, value, self.ttl)
        except Exception as exc:
            self._warn(exc)

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._failed_at > 30:
            self._failed_at = now
            log.warning("response cache unavailable, serving fresh replies: %s", exc)

    async def clear(self) -> None:
        await self.store.clear()

    async def close(self) -> None:
        await self.store.close()
