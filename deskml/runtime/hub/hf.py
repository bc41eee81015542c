"""Hugging Face as a source: list a repository's files, read a file's published sha256 and size.

Uses the same endpoints as `huggingface_hub`: `GET /api/models/{repo}/tree/{rev}` for the listing
(LFS files carry `lfs.oid`, their sha256) and `HEAD /{repo}/resolve/{rev}/{file}`, whose
`X-Linked-Etag` / `X-Linked-Size` headers give an LFS file's sha256 and size before the redirect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

import httpx

from deskml.core.errors import BadRequest, NotFound
from deskml.runtime.hub.download import network_error, status_error
from deskml.runtime.hub.plan import quant_of

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SPLIT = re.compile(r"-\d{5}-of-\d{5}\.gguf$")
_DEFAULT_QUANTS = ("Q4_K_M", "Q4_K_S", "Q4_0", "Q5_K_M", "Q8_0")


@dataclass
class HubFile:
    path: str
    size: int | None
    sha256: str | None


class HuggingFace:
    def __init__(self, client: httpx.AsyncClient, endpoint: str, token: str | None) -> None:
        self.client = client
        self.endpoint = endpoint.rstrip("/")
        self.token = token

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def resolve_url(self, repo: str, revision: str, path: str) -> str:
        return f"{self.endpoint}/{repo}/resolve/{quote(revision, safe='')}/{quote(path)}"

    async def list_files(self, repo: str, revision: str = "main") -> list[HubFile]:
        url: str | None = f"{self.endpoint}/api/models/{repo}/tree/{quote(revision, safe='')}?recursive=true"
        files: list[HubFile] = []
        while url:
            try:
                response = await self.client.get(url, headers=self.headers())
            except httpx.HTTPError as exc:
                raise network_error(exc, url) from None
            if response.status_code >= 400:
                raise status_error(response, f"the Hugging Face repository {repo}")
            for item in response.json():
                if item.get("type") != "file":
                    continue
                lfs = item.get("lfs") or {}
                sha = str(lfs.get("oid") or lfs.get("sha256") or "").lower()
                files.append(HubFile(path=item["path"], size=lfs.get("size") or item.get("size"),
                                     sha256=sha if _SHA256.match(sha) else None))
            url = response.links.get("next", {}).get("url")  # large repos page their listing
        return files

    async def file_info(self, repo: str, revision: str, path: str) -> HubFile:
        url = self.resolve_url(repo, revision, path)
        try:
            response = await self.client.head(url, headers=self.headers(), follow_redirects=False)
        except httpx.HTTPError as exc:
            raise network_error(exc, url) from None
        if response.status_code >= 400:
            raise status_error(response, f"{path} in {repo}")
        etag = (response.headers.get("x-linked-etag") or response.headers.get("etag") or "")
        etag = etag.removeprefix("W/").strip('"').lower()
        size = response.headers.get("x-linked-size") or response.headers.get("content-length")
        return HubFile(path=path, size=int(size) if size and size.isdigit() else None,
                       sha256=etag if _SHA256.match(etag) else None)


def pick_gguf(files: list[HubFile], repo: str, quant: str | None) -> HubFile:
    """The GGUF that `hf.co/REPO:QUANT` means, as Ollama picks it (Q4_K_M when no quant is given)."""
    ggufs = [f for f in files if f.path.lower().endswith(".gguf") and "mmproj" not in f.path.lower()]
    if not ggufs:
        raise NotFound(f"the Hugging Face repository {repo} has no GGUF files")
    if quant is None:
        for wanted in _DEFAULT_QUANTS:
            found = [f for f in ggufs if quant_of(f.path) == wanted]
            if found:
                return _single(found, repo)
        return _single(sorted(ggufs, key=lambda f: f.size or 0)[:1], repo)
    found = [f for f in ggufs if (quant_of(f.path) or "") == quant.upper()]
    if not found:
        available = sorted({q for f in ggufs if (q := quant_of(f.path))})
        raise NotFound(f"{repo} has no {quant} GGUF; available: {', '.join(available) or 'none recognised'}")
    return _single(found, repo)


def _single(found: list[HubFile], repo: str) -> HubFile:
    if any(_SPLIT.search(f.path) for f in found):
        raise BadRequest(f"{repo} splits this GGUF into several files, which deskml cannot load yet; "
                         f"choose a smaller quantization")
    return sorted(found, key=lambda f: f.path)[0]
