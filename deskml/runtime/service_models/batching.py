"""Dynamic batching: concurrent requests to one model share one forward pass.

A `MicroBatcher` collects submissions until it has `max_size` of them or `max_wait` seconds have
passed since the first one arrived, then runs them as one batch. It only waits for requests that
have announced themselves (`incoming()`: they are being decoded and will submit in a moment), so
a lone request never waits at all. While a batch runs, new submissions queue up and form the next
batch at once, so under load batches fill by themselves. Nothing polls: waiting is an `asyncio.Event` with a
timeout. One batch runs at a time per batcher, which also keeps CPU threads from contending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from deskml.core.aio import wait_event

log = logging.getLogger("deskml.runtime.service_models.batching")

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


@dataclass
class BatchStats:
    batches: int = 0
    items: int = 0
    largest: int = 0

    @property
    def mean_size(self) -> float:
        return self.items / self.batches if self.batches else 0.0


class MicroBatcher(Generic[ItemT, ResultT]):
    def __init__(
        self, run: Callable[[list[ItemT]], Awaitable[list[ResultT]]], *, max_size: int = 8, max_wait: float = 0.005
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._run = run
        self.max_size = max_size
        self.max_wait = max(0.0, max_wait)
        self.stats = BatchStats()
        self._pending: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        self._full = asyncio.Event()  # set when waiting is pointless: batch full or nobody announced
        self._incoming = 0
        self._worker: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        return len(self._pending)

    @contextlib.contextmanager
    def incoming(self) -> Iterator[None]:
        """Announce a request that will `enqueue` soon, so a forming batch waits for it."""
        self._incoming += 1
        try:
            yield
        finally:
            self._incoming -= 1
            if self._incoming == 0:
                self._full.set()

    def enqueue(self, item: ItemT) -> asyncio.Future[ResultT]:
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self.max_size:
            self._full.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain(), name="deskml-microbatch")
        return future

    async def submit(self, item: ItemT) -> ResultT:
        # A caller that goes away cancels only its own future; the batch it was in still runs
        # for the others, and its result is dropped.
        return await self.enqueue(item)

    async def close(self) -> None:
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        for _, future in self._pending:
            if not future.done():
                future.cancel()
        self._pending.clear()

    async def _drain(self) -> None:
        while self._pending:
            if len(self._pending) < self.max_size and self._incoming > 0 and self.max_wait > 0:
                self._full.clear()
                await wait_event(self._full, self.max_wait)
            batch, self._pending = self._pending[: self.max_size], self._pending[self.max_size :]
            live = [(item, future) for item, future in batch if not future.done()]
            if not live:
                continue
            self.stats.batches += 1
            self.stats.items += len(live)
            self.stats.largest = max(self.stats.largest, len(live))
            try:
                results = await self._run([item for item, _ in live])
                if len(results) != len(live):
                    raise RuntimeError(f"batch of {len(live)} gave {len(results)} results")
            except asyncio.CancelledError:
                for _, future in live:
                    future.cancel()
                raise
            except Exception as exc:  # every caller in the batch gets the engine's error
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(live, results, strict=True):
                if not future.done():
                    future.set_result(result)
