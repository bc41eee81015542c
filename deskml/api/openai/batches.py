"""OpenAI's Files and Batch APIs: `/v1/files` and `/v1/batches`, on deskml's job system.

A batch is a job of kind `batch`: its lines run through the same scheduler as live requests, at
batch priority (runtime/jobs/tasks/batch.py). Input files are checked line by line at upload,
so a malformed one is a 400 then, not a failed batch later.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, File, Form, Query, Response, UploadFile

from deskml.api.deps import JobsDep, PrincipalDep, UploadLimitDep
from deskml.api.openai import batch_schemas as wire
from deskml.api.uploads import read_upload
from deskml.core.errors import BadRequest
from deskml.core.principal import Principal
from deskml.runtime.jobs.service import JobService
from deskml.runtime.jobs.store import FileInfo, JobInfo

router = APIRouter(prefix="/v1")

# OpenAI's purposes for uploads: `batch` inputs, and `fine-tune` (deskml: a classifier dataset).
PURPOSES = {"batch": "batch", "fine-tune": "fine-tune", "train": "train"}


def _ts(stamp: datetime | None) -> int | None:
    return int(stamp.timestamp()) if stamp is not None else None


def file_object(info: FileInfo) -> wire.FileObject:
    return wire.FileObject(id=info.id, bytes=info.bytes, created_at=int(info.created_at.timestamp()),
                           filename=info.filename, purpose=info.purpose)


def batch_status(job: JobInfo) -> wire.BatchStatus:
    if job.state == "PENDING":
        return "validating"
    if job.state == "PROGRESS":
        return "in_progress"
    if job.state == "SUCCESS":
        return "completed"
    if job.state == "FAILURE":
        return "failed"
    return "cancelled" if job.finished_at is not None else "cancelling"


def batch_object(job: JobInfo) -> wire.BatchObject:
    params, result = job.params, job.result or {}
    counts = result.get("request_counts") or job.stats or {}
    status = batch_status(job)
    errors = None
    if job.state == "FAILURE":
        errors = wire.BatchErrors(data=[wire.BatchError(code="batch_failed", message=job.error)])
    return wire.BatchObject(
        id=job.id, endpoint=params.get("endpoint", ""), errors=errors, input_file_id=params.get("input_file_id", ""),
        completion_window=params.get("completion_window", "24h"), status=status,
        output_file_id=result.get("output_file_id"), error_file_id=result.get("error_file_id"),
        created_at=int(job.created_at.timestamp()), in_progress_at=_ts(job.started_at),
        expires_at=int((job.created_at + timedelta(hours=24)).timestamp()),
        finalizing_at=_ts(job.finished_at) if job.state == "SUCCESS" else None,
        completed_at=_ts(job.finished_at) if job.state == "SUCCESS" else None,
        failed_at=_ts(job.finished_at) if job.state == "FAILURE" else None,
        cancelling_at=_ts(job.updated_at) if job.state == "CANCELLED" else None,
        cancelled_at=_ts(job.finished_at) if job.state == "CANCELLED" else None,
        request_counts=wire.RequestCounts(total=int(counts.get("total", params.get("lines", 0))),
                                          completed=int(counts.get("completed", 0)),
                                          failed=int(counts.get("failed", 0))),
        metadata=params.get("metadata") or None,
    )


# files -------------------------------------------------------------------------------------------
@router.post("/files")
async def create_file(
    service: JobsDep,
    caller: PrincipalDep,
    limit: UploadLimitDep,
    file: UploadFile | None = File(None),
    purpose: str = Form(..., description="batch (a batch input JSONL) or fine-tune (a classifier dataset)."),
) -> wire.FileObject:
    if purpose not in PURPOSES:
        raise BadRequest(f"purpose must be one of {', '.join(PURPOSES)}", param="purpose")
    data = await read_upload(file, "file", limit)
    info = await service.upload(caller, PURPOSES[purpose], (file.filename or "") if file else "", data)
    return file_object(info)


@router.get("/files")
async def list_files(service: JobsDep, caller: PrincipalDep, purpose: str | None = Query(None),
                     limit: int = Query(100, ge=1, le=10000)) -> wire.FileList:
    files = [file_object(f) for f in await service.files(caller, purpose, limit)]
    return wire.FileList(data=files, first_id=files[0].id if files else None,
                         last_id=files[-1].id if files else None)


@router.get("/files/{file_id}")
async def get_file(file_id: str, service: JobsDep, caller: PrincipalDep) -> wire.FileObject:
    return file_object(await service.file(caller, file_id))


@router.get("/files/{file_id}/content")
async def file_content(file_id: str, service: JobsDep, caller: PrincipalDep) -> Response:
    data = await service.file_content(caller, file_id)
    return Response(data, media_type="application/jsonl" if not data.startswith(b"PK") else "application/zip")


@router.delete("/files/{file_id}")
async def delete_file(file_id: str, service: JobsDep, caller: PrincipalDep) -> wire.FileDeleted:
    await service.delete_file(caller, file_id)
    return wire.FileDeleted(id=file_id)


# batches -----------------------------------------------------------------------------------------
@router.post("/batches")
async def create_batch(body: wire.CreateBatch, service: JobsDep, caller: PrincipalDep) -> wire.BatchObject:
    job = await service.batch(caller, body.input_file_id, body.endpoint, body.completion_window,
                                     body.metadata)
    return batch_object(job)


@router.get("/batches")
async def list_batches(service: JobsDep, caller: PrincipalDep, limit: int = Query(20, ge=1, le=100),
                       after: str | None = Query(None)) -> wire.BatchList:
    jobs = await service.list(caller, kind="batch", limit=1000 if after else limit + 1)
    if after:
        ids = [job.id for job in jobs]
        jobs = jobs[ids.index(after) + 1 :] if after in ids else []
    page, more = jobs[:limit], len(jobs) > limit
    data = [batch_object(job) for job in page]
    return wire.BatchList(data=data, has_more=more, first_id=data[0].id if data else None,
                          last_id=data[-1].id if data else None)


@router.get("/batches/{batch_id}")
async def get_batch(batch_id: str, service: JobsDep, caller: PrincipalDep) -> wire.BatchObject:
    return batch_object(await _batch(service, caller, batch_id))


@router.post("/batches/{batch_id}/cancel")
async def cancel_batch(batch_id: str, service: JobsDep, caller: PrincipalDep) -> wire.BatchObject:
    await _batch(service, caller, batch_id)
    return batch_object(await service.cancel(caller, batch_id))


async def _batch(service: JobService, caller: Principal, batch_id: str) -> JobInfo:
    job = await service.get(caller, batch_id)
    if job.kind != "batch":
        raise BadRequest(f"{batch_id} is a {job.kind} job, not a batch", param="batch_id")
    return job


