"""OpenAI-compatible batch inference: every line of the input file through the live scheduler,
at batch priority, into an output file and an error file matched by `custom_id`.

Lines wait behind live requests in the slot queue (PRIORITY_BATCH), but on a small machine the
slots share a few CPU cores, so a batch line that holds a slot still slows a live request down
(measured on 2 cores: a live reply took 2.6x its idle time beside 2 batch lines, 2.0x beside 1).
So the `LiveGate` starts new lines only while no other request is running or queued on a loaded
LLM (up to `DESKML_JOBS_BATCH_PARALLEL` at once, default half the slots): batch work fills idle
time and steps aside when live traffic comes. A cancelled batch keeps what it finished: its
partial output and error files are written, as OpenAI does.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import TYPE_CHECKING, Any

from deskml.core.aio import wait_event
from deskml.core.errors import DeskmlError
from deskml.runtime.jobs.datasets import BatchLine, parse_batch_file
from deskml.runtime.jobs.task_context import JobContext, JobFailed
from deskml.runtime.scheduler import PRIORITY_BATCH

if TYPE_CHECKING:
    from deskml.runtime.lifecycle import ModelManager


def _line(custom_id: str, status: int, body: dict[str, Any]) -> str:
    return json.dumps({
        "id": f"batch_req_{secrets.token_hex(12)}", "custom_id": custom_id,
        "response": {"status_code": status, "request_id": secrets.token_hex(16), "body": body}, "error": None,
    }, ensure_ascii=False, separators=(",", ":"))


def _error_body(exc: Exception) -> tuple[int, dict[str, Any]]:
    if isinstance(exc, DeskmlError):
        kind = "server_error" if exc.status >= 500 else "invalid_request_error"
        return exc.status, {"error": {"message": exc.message, "type": kind, "param": exc.param, "code": exc.code}}
    return 500, {"error": {"message": f"internal error: {type(exc).__name__}", "type": "server_error",
                           "param": None, "code": None}}


def parallel_lines(ctx: JobContext) -> int:
    settings = ctx.settings
    return settings.jobs_batch_parallel or max(1, settings.num_parallel // 2)


class LiveGate:
    """Admits batch lines: up to `most` at once while the loaded LLMs serve nothing else, none
    while they do (lines already running finish)."""

    RECHECK = 0.02  # seconds between looks while live requests hold the models

    def __init__(self, manager: ModelManager, most: int) -> None:
        self.manager = manager
        self.most = max(1, most)
        self.in_flight = 0
        self._freed = asyncio.Event()

    def others(self) -> int:
        """Requests running or queued on loaded LLMs that are not this batch's."""
        busy = sum(model.scheduler.running + model.scheduler.queued for model in self.manager.loaded())
        return max(0, busy - self.in_flight)

    async def acquire(self) -> None:
        while self.in_flight >= self.most or self.others() > 0:
            self._freed.clear()
            await wait_event(self._freed, self.RECHECK)
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
        self._freed.set()


async def run_batch(ctx: JobContext) -> dict[str, Any]:
    params = ctx.job.params
    data = await asyncio.to_thread(ctx.store.read_file, params["input_file_id"])
    lines = await asyncio.to_thread(parse_batch_file, data)
    del data
    endpoint = params["endpoint"]
    handler = ctx.runtime.batch_handlers.get(endpoint)
    if handler is None:
        raise JobFailed(f"this process cannot run {endpoint} batches")
    total = len(lines)
    outputs: list[str | None] = [None] * total
    errors: list[str | None] = [None] * total
    ctx.stats = {"total": total, "completed": 0, "failed": 0}
    await ctx.progress(0, total, f"0/{total} requests", force=True)
    gate = LiveGate(ctx.runtime.inference.manager, parallel_lines(ctx))

    async def one(index: int, line: BatchLine) -> None:
        await gate.acquire()
        try:
            try:
                body = await handler(ctx.runtime.inference, line.body, PRIORITY_BATCH)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                status, error = _error_body(exc)
                errors[index] = _line(line.custom_id, status, error)
                ctx.stats["failed"] += 1
            else:
                outputs[index] = _line(line.custom_id, 200, body)
                ctx.stats["completed"] += 1
        finally:
            gate.release()
        done = ctx.stats["completed"] + ctx.stats["failed"]
        await ctx.progress(done, total, f"{done}/{total} requests")

    work = [asyncio.create_task(one(i, line)) for i, line in enumerate(lines)]
    try:
        await asyncio.gather(*work)
    except BaseException:
        for task in work:
            task.cancel()
        await asyncio.gather(*work, return_exceptions=True)
        # Keep what was done, whether the batch was cancelled or a line broke the run.
        ctx.partial = await _write_files(ctx, outputs, errors)
        raise
    return await _write_files(ctx, outputs, errors)


async def _write_files(ctx: JobContext, outputs: list[str | None], errors: list[str | None]) -> dict[str, Any]:
    batch_id = ctx.job.id
    result: dict[str, Any] = {"output_file_id": None, "error_file_id": None,
                              "request_counts": dict(ctx.stats)}
    done = [line for line in outputs if line is not None]
    failed = [line for line in errors if line is not None]
    if done:
        info = await asyncio.to_thread(ctx.store.save_file, ctx.job.owner, "batch_output", f"{batch_id}_output.jsonl",
                                       "jsonl", ("\n".join(done) + "\n").encode(), {"lines": len(done)})
        result["output_file_id"] = info.id
    if failed:
        info = await asyncio.to_thread(ctx.store.save_file, ctx.job.owner, "batch_output", f"{batch_id}_error.jsonl",
                                       "jsonl", ("\n".join(failed) + "\n").encode(), {"lines": len(failed)})
        result["error_file_id"] = info.id
    return result
