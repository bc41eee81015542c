"""The web UI's static files (`deskml/web`, shipped as package data) under `/ui`.

No build step: the files are plain ES modules and CSS, served as they are. Every reply asks the
browser to revalidate (`no-cache` + ETag), so an upgraded deskml never runs a stale mix of modules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

WEB_DIR = Path(__file__).resolve().parent.parent.parent / "web"
UI_PREFIX = "/ui"
# Model replies are rendered as HTML (sanitised markdown): the policy keeps any script that slipped
# through from running, and the page from being framed by another site.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "media-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")

router = APIRouter()


class UiFiles(StaticFiles):
    def file_response(self, full_path: Any, stat_result: Any, scope: Scope, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = CSP
        response.headers["Referrer-Policy"] = "no-referrer"
        return response


def ui_files() -> UiFiles:
    # html=True: `/ui/` answers with index.html.
    return UiFiles(directory=WEB_DIR, html=True, check_dir=True)


@router.get(UI_PREFIX, include_in_schema=False)
async def ui_root() -> RedirectResponse:
    # The page's relative module paths need the trailing slash.
    return RedirectResponse(UI_PREFIX + "/", status_code=308)
