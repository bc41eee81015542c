"""Request-record sinks: what the request-record middleware hands every finished record to (history,
metrics, the access log, token accounting)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence

from deskml.core.context import RequestRecord

log = logging.getLogger("deskml.observe")

RecordSink = Callable[[RequestRecord], "Awaitable[None] | None"]


async def run_sinks(sinks: Sequence[RecordSink], record: RequestRecord) -> None:
    for sink in sinks:
        try:
            result = sink(record)
            if inspect.isawaitable(result):
                await result
        except Exception:  # one broken sink must not hide the record from the others
            log.exception("request record sink %r failed", sink)
