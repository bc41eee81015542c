"""deskml.runtime.reaper: reaps at the reported expiry, early on wake(), survives a failed reap, and
closes cleanly."""

from __future__ import annotations

import asyncio
import time

from deskml.runtime.reaper import Reaper


def test_it_reaps_at_the_next_expiry_and_wakes_early_for_a_new_one() -> None:
    async def main() -> None:
        expiries: list[float] = []
        reaped: list[float] = []

        async def reap() -> float | None:
            now = time.monotonic()
            for at in [e for e in expiries if e <= now]:
                expiries.remove(at)
                reaped.append(now)
            return min(expiries) - time.monotonic() if expiries else None

        reaper = Reaper(reap, name="test-reaper", max_wait=30.0)
        reaper.start()
        await asyncio.sleep(0.05)  # it sleeps for max_wait: nothing will expire
        set_at = time.monotonic()
        expiries.append(set_at + 0.2)
        reaper.wake()
        while not reaped and time.monotonic() - set_at < 5:
            await asyncio.sleep(0.01)
        assert reaped and 0.2 <= reaped[0] - set_at < 2.0
        await reaper.close()
        await reaper.close()  # twice is harmless

    asyncio.run(main())


def test_a_failing_reap_is_logged_and_the_loop_goes_on() -> None:
    async def main() -> None:
        calls = 0

        async def reap() -> float | None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("unload failed")
            return None

        reaper = Reaper(reap, name="test-reaper", max_wait=30.0)
        reaper.start()
        await asyncio.sleep(0.05)
        reaper.wake()
        await asyncio.sleep(0.05)
        assert calls == 2
        await reaper.close()

    asyncio.run(main())


def test_close_cancels_a_reap_in_progress() -> None:
    async def main() -> None:
        started = asyncio.Event()

        async def reap() -> float | None:
            started.set()
            await asyncio.sleep(3600)
            return None

        reaper = Reaper(reap, name="test-reaper")
        reaper.start()
        await started.wait()
        await asyncio.wait_for(reaper.close(), 5)

    asyncio.run(main())
