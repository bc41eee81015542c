"""asyncio helpers that are safe under cancellation on Python 3.11."""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for `event` at most `timeout` seconds; True if it was set.

    Python 3.11's `asyncio.wait_for` can swallow a cancellation that arrives just as the awaited
    event fires, leaving a background loop running forever after `task.cancel()`; `asyncio.timeout`
    does not have that race.
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
