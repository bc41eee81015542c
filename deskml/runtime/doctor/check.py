"""One line of the doctor's report (kept apart so the GPU checks and the report share it without a cycle)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

Status = Literal["ok", "info", "warn", "fail"]


class Check(BaseModel):
    name: str
    status: Status
    message: str
    fix: str | None = None
    blocking: bool = False  # a failure here stops a phone from connecting
