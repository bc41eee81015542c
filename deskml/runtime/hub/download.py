"""HTTP downloads that survive a dropped connection: a partial file, `Range` to resume, sha256 checks.

The partial file sits in the blob store under a name derived from what it will become, so the next
pull of the same file continues where the last one stopped, whichever process ran it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from deskml.core.digest import HashingWriter, hash_file
from deskml.core.errors import Forbidden, NotFound, UpstreamError
from deskml.runtime.diskspace import full_disk_is_507

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass
class Fetched:
    """Filled in by `fetch` as it goes; read it when the iterator ends."""

    sha256: str = ""
    size: int = 0
    resumed_from: int = 0


def host_of(url: str) -> str:
    return urlsplit(url).netloc or url


def network_error(exc: httpx.HTTPError, url: str, done: int = 0, total: int | None = None) -> UpstreamError:
    """One clear line for a network fault, saying what the user can do."""
    host = host_of(url)
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return UpstreamError(f"cannot reach {host}: {_reason(exc)} (check the network or HTTPS_PROXY)")
    if isinstance(exc, httpx.ProxyError):
        return UpstreamError(f"the proxy refused the connection to {host}: {_reason(exc)}")
    of = f" of {total}" if total else ""
    return UpstreamError(f"connection to {host} dropped after {done}{of} bytes ({_reason(exc)}); "
                         f"pull again to resume from there")


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def status_error(response: httpx.Response, what: str) -> Exception:
    code = response.status_code
    if code in (401, 403):
        return Forbidden(f"{what} needs permission ({code}): the repository may be gated or private; "
                         f"accept its licence on the hub and set HF_TOKEN to a token that has access")
    if code == 404:
        return NotFound(f"{what} was not found upstream (404 from {host_of(str(response.url))})")
    return UpstreamError(f"{host_of(str(response.url))} answered {code} for {what}")


async def fetch(
    client: httpx.AsyncClient,
    url: str,
    partial: Path,
    *,
    expected_sha256: str | None,
    expected_size: int | None,
    headers: dict[str, str] | None = None,
    result: Fetched,
    what: str = "",
) -> AsyncGenerator[int, None]:
    """Download `url` into `partial`, resuming what is there; yields bytes done so far.

    On a hash or size mismatch the partial file is deleted and `UpstreamError` raised. On a network
    fault it is kept, so the next call resumes.
    """
    what = what or url
    offset = partial.stat().st_size if partial.exists() else 0
    if expected_size is not None and offset > expected_size:
        partial.unlink()
        offset = 0
    request_headers = dict(headers or {})
    if offset and (expected_size is None or offset < expected_size):
        request_headers["Range"] = f"bytes={offset}-"
    result.resumed_from = offset
    if expected_size is None or offset < expected_size:
        try:
            async with client.stream("GET", url, headers=request_headers) as response:
                offset = _accept_range(response, offset, partial, what)
                result.resumed_from = offset
                if expected_size is None:
                    total = _total_from(response, offset)
                    expected_size = total
                sha = hash_file(partial, offset) if offset else hashlib.sha256()
                done = offset
                try:
                    # A full disk deletes the partial file: keeping it for a resume would keep the disk full.
                    with full_disk_is_507(partial.parent, what, expected_size, remove=partial), \
                            open(partial, "ab" if offset else "wb") as out:
                        writer = HashingWriter(out, sha, offset)
                        async for block in response.aiter_bytes():  # as received: a drop loses nothing
                            writer.write(block)
                            done = writer.written
                            yield done
                except httpx.HTTPError as exc:
                    raise network_error(exc, url, done, expected_size) from None
        except httpx.HTTPError as exc:
            raise network_error(exc, url, offset, expected_size) from None
        result.sha256 = sha.hexdigest()
    else:
        result.sha256 = hash_file(partial, offset).hexdigest()
        yield offset
    result.size = partial.stat().st_size
    if expected_size is not None and result.size != expected_size:
        partial.unlink(missing_ok=True)
        raise UpstreamError(f"{what}: got {result.size} bytes, expected {expected_size}; "
                            f"the partial download was deleted")
    if expected_sha256 is not None and result.sha256 != expected_sha256:
        partial.unlink(missing_ok=True)
        raise UpstreamError(f"{what}: sha256 mismatch (got {result.sha256}, expected {expected_sha256}); "
                            f"the corrupt download was deleted")


def _accept_range(response: httpx.Response, offset: int, partial: Path, what: str) -> int:
    """Where the body starts: at `offset` for a 206 that honours it, else from scratch."""
    if response.status_code == 206 and offset:
        match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
        if match and int(match.group(1)) == offset:
            return offset
        raise UpstreamError(f"{what}: the server answered a different range than asked for")
    if response.status_code == 200:
        return 0  # the server ignored Range: start again
    if response.status_code == 416:
        partial.unlink(missing_ok=True)  # our partial is longer than the file is now
        raise UpstreamError(f"{what}: the file changed upstream since the last try; pull again to start over")
    raise status_error(response, what)


def _total_from(response: httpx.Response, offset: int) -> int | None:
    match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
    if match and match.group(3) != "*":
        return int(match.group(3))
    length = response.headers.get("content-length")
    if length and length.isdigit() and "content-encoding" not in response.headers:
        return offset + int(length)
    return None
