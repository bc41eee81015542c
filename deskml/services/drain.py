"""Shutdown state shared by the server (which starts the drain on a signal) and the request-record
middleware (which refuses new requests and, once the grace is over, cancels those still running)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("deskml.observe")


class Drain:
    """Shutdown state shared by the server (which starts it) and the middleware (which obeys it)."""

    def __init__(self) -> None:
        self.draining = False
        self.expired = False
        self.active: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.idle = asyncio.Event()
        self.idle.set()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def begin(self, grace: float, reason: str = "") -> None:
        """Stop admitting requests; after `grace` seconds cancel those still running. Thread-safe (a
        signal handler calls it), so the work happens on the loop."""
        loop = self._loop
        if loop is None:
            return
        loop.call_soon_threadsafe(self._begin, grace, reason)

    def _begin(self, grace: float, reason: str = "") -> None:
        why = f" ({reason})" if reason else ""
        if self.draining:
            if grace <= 0 and not self.expired:  # asked again: stop waiting
                log.info("shutting down now%s", why)
                self.close()
                self._expire()
            return
        self.draining = True
        if self.active:
            log.info("shutting down%s: %d request(s) in flight get %gs to finish", why, len(self.active), grace)
        assert self._loop is not None
        self._timer = self._loop.call_later(max(0.0, grace), self._expire)

    def _expire(self) -> None:
        self.expired = True
        if self.active:
            log.warning("shutdown grace over: ending %d request(s) still running", len(self.active))
        for task in list(self.active):
            task.cancel()

    def enter(self, task: asyncio.Task[Any]) -> None:
        self.active.add(task)
        self.idle.clear()

    def leave(self, task: asyncio.Task[Any]) -> None:
        self.active.discard(task)
        if not self.active:
            self.idle.set()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
