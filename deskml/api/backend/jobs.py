"""Job routes: the seed's `/api/train` + `/api/task/<id>/status`, and deskml's `/api/jobs`
(list, show, cancel, server-sent progress events), `/api/files` (dataset uploads) and
`/api/classify` (text classifiers that jobs trained)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import StreamingResponse

from deskml.api.backend import jobs_schemas as wire
from deskml.api.deps import JobsDep, PrincipalDep, ServiceTasksDep, UploadLimitDep
from deskml.api.streaming import dumps
from deskml.api.uploads import read_upload
from deskml.core.errors import DeskmlError, ModelNotFound
from deskml.runtime.jobs.store import FileInfo, JobInfo

router = APIRouter()


def job_out(job: JobInfo) -> wire.JobOut:
    return wire.JobOut(
        id=job.id, kind=job.kind, state=job.state, current=job.current, total=job.total,
        progress=round(min(1.0, job.current / job.total), 4) if job.total else (1.0 if job.state == "SUCCESS" else 0.0),
        message=job.message, result=job.result, error=job.error, stats=job.stats, params=job.params,
        owner=job.owner, executor=job.executor, worker=job.worker, attempts=job.attempts,
        max_attempts=job.max_attempts, created_at=job.created_at, started_at=job.started_at,
        finished_at=job.finished_at, updated_at=job.updated_at,
    )


def task_status(job: JobInfo) -> wire.TaskStatus:
    """The seed's `task_status` reply for a job."""
    total = max(job.total, 1)
    if job.state == "PENDING":
        return wire.TaskStatus(state="PENDING", current=0, total=total, status="Task queued...")
    if job.state == "PROGRESS":
        status = f"Processing {job.current}/{total}" + (f": {job.message}" if job.message else "")
        return wire.TaskStatus(state="PROGRESS", current=job.current, total=total, status=status)
    if job.state == "SUCCESS":
        return wire.TaskStatus(state="SUCCESS", current=total, total=total, status="Completed!", result=job.result)
    reason = job.error or job.message or "failed"
    if job.state == "CANCELLED":
        reason = f"cancelled: {reason}" if not reason.startswith("cancel") else reason
    return wire.TaskStatus(state="FAILURE", current=job.current, total=total, status=reason)


def file_out(info: FileInfo) -> wire.FileOut:
    return wire.FileOut(id=info.id, filename=info.filename, purpose=info.purpose, format=info.format,
                        bytes=info.bytes, sha256=info.sha256, summary=info.meta, created_at=info.created_at)


# the seed's routes ------------------------------------------------------------------------------
@router.post("/api/train")
async def train(body: wire.TrainRequest, service: JobsDep, caller: PrincipalDep) -> wire.TrainResponse:
    job = await service.train(caller, body.dataset, body.config)
    return wire.TrainResponse(task_id=job.id, status_url=f"/api/task/{job.id}/status")


@router.get("/api/task/{task_id}/status")
async def status(task_id: str, service: JobsDep, caller: PrincipalDep) -> wire.TaskStatus:
    return task_status(await service.get(caller, task_id))


# deskml's job routes -----------------------------------------------------------------------------
@router.post("/api/files")
async def upload(
    service: JobsDep,
    caller: PrincipalDep,
    limit: UploadLimitDep,
    file: UploadFile | None = File(None, description="A CSV/JSONL text dataset, a zip of label folders, or a "
                                   "batch JSONL file."),
    purpose: str = Form("train", description="train (a dataset) or batch."),
) -> wire.FileOut:
    data = await read_upload(file, "file", limit)
    info = await service.upload(caller, purpose, file.filename or "" if file else "", data)
    return file_out(info)


@router.get("/api/jobs")
async def list_jobs(
    service: JobsDep,
    caller: PrincipalDep,
    state: str | None = Query(None, description="PENDING, PROGRESS, SUCCESS, FAILURE or CANCELLED."),
    kind: str | None = Query(None),
    limit: int = Query(50, ge=1, le=1000),
    mine: bool = Query(False, description="Only my jobs, also for an admin."),
) -> wire.JobList:
    jobs = await service.list(caller, state=state.upper() if state else None, kind=kind, limit=limit, mine=mine)
    return wire.JobList(jobs=[job_out(job) for job in jobs])


@router.get("/api/jobs/{job_id}")
async def show_job(job_id: str, service: JobsDep, caller: PrincipalDep) -> wire.JobOut:
    return job_out(await service.get(caller, job_id))


@router.delete("/api/jobs/{job_id}")
async def cancel_job(job_id: str, service: JobsDep, caller: PrincipalDep) -> wire.JobOut:
    return job_out(await service.cancel(caller, job_id))


@router.get("/api/jobs/{job_id}/events")
async def job_events(job_id: str, service: JobsDep, caller: PrincipalDep) -> StreamingResponse:
    """Server-sent events: `progress` with the job each time it changes, then `end` when it is over."""
    jobs, who = service, caller
    await jobs.get(who, job_id)  # 404 before the stream starts

    async def lines() -> AsyncIterator[bytes]:
        last: JobInfo | None = None
        try:
            async for job in jobs.watch(who, job_id):
                last = job
                payload = dumps(job_out(job).model_dump(mode="json"))
                yield f"event: progress\ndata: {payload}\n\n".encode()
        except DeskmlError as exc:
            yield f"event: error\ndata: {dumps({'error': exc.message})}\n\n".encode()
            return
        except asyncio.CancelledError:
            raise
        if last is not None:
            yield f"event: end\ndata: {dumps({'state': last.state})}\n\n".encode()

    return StreamingResponse(lines(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/api/classify")
async def classify(body: wire.ClassifyTextRequest, service: JobsDep,
                   tasks: ServiceTasksDep) -> wire.ClassifyTextResponse:
    inputs = [body.input] if isinstance(body.input, str) else list(body.input)
    try:
        model, predictions, total_ns = await tasks.classify_text(body.model, inputs, body.top_k)
    except ModelNotFound:  # trained by a worker elsewhere moments ago: look again once
        await service.trained.refresh()
        model, predictions, total_ns = await tasks.classify_text(body.model, inputs, body.top_k)
    results = [
        wire.ClassifiedText(label=row[0].label, score=round(row[0].score, 6),
                            labels=[wire.LabelScore(label=p.label, score=round(p.score, 6)) for p in row])
        for row in predictions
    ]
    return wire.ClassifyTextResponse(model=model, results=results, total_duration=total_ns)
