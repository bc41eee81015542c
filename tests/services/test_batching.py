"""The micro-batcher on its own: batches form from concurrent submissions, results go back to the
right caller, errors reach every caller of the failed batch, a departed caller does not hurt others."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from deskml.runtime.service_models.batching import MicroBatcher

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def test_concurrent_submissions_share_one_batch_and_keep_their_results() -> None:
    calls: list[list[int]] = []

    async def double(items: list[int]) -> list[int]:
        calls.append(list(items))
        await asyncio.sleep(0.01)
        return [2 * i for i in items]

    async def main() -> list[int]:
        batcher = MicroBatcher(double, max_size=8, max_wait=0.05)
        return list(await asyncio.gather(*(batcher.submit(i) for i in range(8))))

    assert run(main()) == [2 * i for i in range(8)]
    assert calls == [list(range(8))]  # full batch: no waiting for the timer


def test_batches_never_exceed_max_size_and_later_arrivals_form_the_next() -> None:
    sizes: list[int] = []

    async def echo(items: list[int]) -> list[int]:
        sizes.append(len(items))
        await asyncio.sleep(0.02)
        return items

    async def main() -> None:
        batcher = MicroBatcher(echo, max_size=4, max_wait=0.001)
        results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
        assert list(results) == list(range(10))
        assert batcher.stats.batches == len(sizes) and batcher.stats.items == 10

    run(main())
    assert max(sizes) <= 4 and sum(sizes) == 10 and sizes[0] == 4


def test_a_lone_request_does_not_wait_for_the_timer() -> None:
    async def echo(items: list[str]) -> list[str]:
        return items

    async def main() -> float:
        batcher = MicroBatcher(echo, max_size=8, max_wait=2.0)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await batcher.submit("only") == "only"
        return loop.time() - started

    assert run(main()) < 0.5  # nobody announced: the batch runs at once, not after max_wait


def test_a_forming_batch_waits_for_announced_requests() -> None:
    sizes: list[int] = []

    async def echo(items: list[int]) -> list[int]:
        sizes.append(len(items))
        return items

    async def request(batcher: MicroBatcher[int, int], value: int, decode_seconds: float) -> int:
        with batcher.incoming():
            await asyncio.sleep(decode_seconds)  # stands in for decoding the upload in a thread
            pending = batcher.enqueue(value)
        return await pending

    async def main() -> list[int]:
        batcher = MicroBatcher(echo, max_size=8, max_wait=1.0)
        return list(await asyncio.gather(*(request(batcher, i, 0.01 * i) for i in range(4))))

    assert run(main()) == [0, 1, 2, 3]
    assert sizes == [4]  # the first waited for the three still decoding, then ran at once


def test_an_engine_error_reaches_every_caller_of_that_batch_only() -> None:
    async def flaky(items: list[int]) -> list[int]:
        if 13 in items:
            raise ValueError("engine failed")
        return items

    async def main() -> None:
        batcher = MicroBatcher(flaky, max_size=2, max_wait=0.01)
        first = await asyncio.gather(batcher.submit(13), batcher.submit(1), return_exceptions=True)
        assert all(isinstance(r, ValueError) for r in first)
        assert await batcher.submit(5) == 5  # the batcher keeps working

    run(main())


def test_a_cancelled_caller_does_not_break_the_batch() -> None:
    async def slow(items: list[int]) -> list[int]:
        await asyncio.sleep(0.05)
        return items

    async def main() -> None:
        batcher = MicroBatcher(slow, max_size=4, max_wait=0.01)
        leaving = asyncio.create_task(batcher.submit(1))
        staying = asyncio.create_task(batcher.submit(2))
        await asyncio.sleep(0.02)
        leaving.cancel()
        assert await staying == 2
        with pytest.raises(asyncio.CancelledError):
            await leaving
        await batcher.close()

    run(main())


def test_wrong_result_count_is_an_error_not_a_mixup() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:1]

    async def main() -> None:
        batcher = MicroBatcher(short, max_size=2, max_wait=0.01)
        results = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)

    run(main())
