"""Admission to a loaded model's decoding slots: N run at once, a bounded queue waits.

llama.cpp batches whatever runs (continuous batching); this layer decides *who* runs, so that the
queue is bounded (503 when full), visible (`/api/ps`), ordered by priority (live traffic before
batch jobs) and leak-free when a waiting client goes away.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

from deskml.core.errors import Busy

PRIORITY_LIVE = 0
PRIORITY_BATCH = 10


class SlotScheduler:
    def __init__(self, slots: int, max_queue: int) -> None:
        self.slots = max(1, slots)
        self.max_queue = max(0, max_queue)
        self.running = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def queued(self) -> int:
        return sum(1 for _, _, fut in self._waiters if not fut.done())

    @property
    def idle(self) -> bool:
        return self.running == 0 and self.queued == 0

    async def wait_idle(self) -> None:
        await self._idle.wait()

    async def acquire(self, priority: int = PRIORITY_LIVE) -> None:
        if self.running < self.slots and self.queued == 0:
            self.running += 1
            self._idle.clear()
            return
        if self.queued >= self.max_queue:
            raise Busy("server busy", retry_after=1.0)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (priority, next(self._seq), future)
        heapq.heappush(self._waiters, entry)
        self._idle.clear()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # the slot was handed to us just as we were cancelled: pass it on
            else:
                self._drop(entry)
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)  # the slot passes straight to the next waiter
                return
        self.running = max(0, self.running - 1)
        if self.running == 0:
            self._idle.set()

    def _drop(self, entry: tuple[int, int, asyncio.Future[None]]) -> None:
        try:
            self._waiters.remove(entry)
            heapq.heapify(self._waiters)
        except ValueError:
            pass
        if self.idle:
            self._idle.set()
