"""A circuit breaker per upstream: closed (traffic flows), open (skipped for `open_seconds`), half-open
(one request, or a health check, probes whether it is back)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]


class Breaker:
    def __init__(self, threshold: int, open_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.open_seconds = open_seconds
        self.clock = clock
        self.state: BreakerState = "closed"
        self.failures = 0
        self.opened_at = 0.0
        self.probing = False  # a half-open probe request is in flight
        self.opened_count = 0

    def allow(self) -> bool:
        """Whether a request may go to this upstream now; in half-open, the caller becomes the probe."""
        if self.state == "open" and self.clock() - self.opened_at >= self.open_seconds:
            self.state = "half_open"
        if self.state == "closed":
            return True
        if self.state == "half_open" and not self.probing:
            self.probing = True
            return True
        return False

    def available(self) -> bool:
        """Like allow() but without taking the probe: for ordering and listings."""
        if self.state == "open":
            return self.clock() - self.opened_at >= self.open_seconds
        return self.state == "closed" or not self.probing

    def success(self) -> None:
        self.state, self.failures, self.probing = "closed", 0, False

    def failure(self) -> None:
        self.failures += 1
        self.probing = False
        if self.state == "half_open" or self.failures >= self.threshold:
            self.trip()

    def trip(self) -> None:
        if self.state != "open":
            self.opened_count += 1
        self.state, self.opened_at, self.probing = "open", self.clock(), False

    def healthy(self) -> None:
        """A health check got through: let the next request probe instead of waiting out the timer."""
        if self.state == "open":
            self.state, self.probing = "half_open", False

    def release(self) -> None:
        """A probe ended without a verdict (the client left, or the request itself was bad)."""
        self.probing = False
