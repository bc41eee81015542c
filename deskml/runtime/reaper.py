"""The keep_alive reaper shared by the LLM and the non-LLM model managers: one background task that
unloads what has expired and sleeps until the next expiry."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from deskml.core.aio import wait_event

log = logging.getLogger("deskml.runtime")

# reap() unloads what has expired (never a busy model) and returns the seconds until the next expiry,
# or None when nothing loaded will expire.
Reap = Callable[[], Awaitable[float | None]]


class Reaper:
    """Calls `reap` now, then again at the next expiry it reports, at least every `max_wait` seconds,
    and at once after `wake()` (a new, maybe earlier, expiry was set)."""

    def __init__(self, reap: Reap, *, name: str, max_wait: float = 60.0, min_wait: float = 0.05) -> None:
        self._reap = reap
        self.name = name
        self.max_wait = max_wait
        self.min_wait = min_wait  # an expired model still busy is looked at again this soon, not in a spin
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    def wake(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            self._wake.clear()  # before reaping: a wake() while it runs is not lost
            try:
                upcoming = await self._reap()
            except Exception:  # one failed unload must not stop every later expiry
                log.exception("%s: reaping failed", self.name)
                upcoming = None
            wait = self.max_wait if upcoming is None else min(max(self.min_wait, upcoming), self.max_wait)
            await wait_event(self._wake, wait)
