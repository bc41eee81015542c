"""A local HTTP server standing in for Hugging Face and a PyPI simple index in the hub tests.

Hugging Face layout: `GET /api/models/{owner}/{repo}/tree/{rev}` lists files (LFS ones with their
sha256 in `lfs.oid`); `HEAD|GET /{owner}/{repo}/resolve/{rev}/{path}` answers 302 to `/cdn/{sha}`
with `X-Linked-Etag` / `X-Linked-Size`, as the real hub does; `/cdn/{sha}` serves the bytes with
`Range` support. Switches: `drop_after` (close the connection after N body bytes, once),
`corrupt` (serve other bytes than listed), gated repos that need `Authorization: Bearer TOKEN`.
PyPI: `/simple/{project}/` (HTML, `#sha256=` fragments) and `/packages/{file}`.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class HubFile:
    data: bytes
    listed_sha: str = ""  # what the listing and headers claim (differs from data when corrupt)

    def __post_init__(self) -> None:
        self.listed_sha = self.listed_sha or hashlib.sha256(self.data).hexdigest()


@dataclass
class FakeHub:
    repos: dict[str, dict[str, HubFile]] = field(default_factory=dict)  # "owner/repo" -> path -> file
    gated: dict[str, str] = field(default_factory=dict)  # "owner/repo" -> token it needs
    wheels: dict[str, bytes] = field(default_factory=dict)  # filename -> bytes
    drop_after: int | None = None
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, Range header)
    url: str = ""

    def add(self, repo: str, path: str, data: bytes, listed_sha: str = "") -> HubFile:
        item = HubFile(data, listed_sha)
        self.repos.setdefault(repo, {})[path] = item
        return item

    def blob(self, sha: str) -> HubFile | None:
        for files in self.repos.values():
            for item in files.values():
                if item.listed_sha == sha:
                    return item
        return None

    def ranges(self, path_part: str) -> list[str]:
        return [r for (_m, p, r) in self.requests if path_part in p]


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self._route(head=True)

        def do_GET(self) -> None:
            self._route(head=False)

        def _route(self, head: bool) -> None:
            hub.requests.append((self.command, self.path, self.headers.get("Range", "")))
            path = self.path.split("?", 1)[0]
            if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)", path):
                return self._tree(match.group(1))
            if match := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
                return self._resolve(match.group(1), match.group(3))
            if match := re.fullmatch(r"/cdn/([0-9a-f]{64})", path):
                item = hub.blob(match.group(1))
                return self._bytes(item.data, head) if item else self._status(404)
            if match := re.fullmatch(r"/simple/([^/]+)/", path):
                return self._simple(match.group(1))
            if match := re.fullmatch(r"/packages/(.+)", path):
                data = hub.wheels.get(match.group(1))
                return self._bytes(data, head) if data is not None else self._status(404)
            return self._status(404)

        def _allowed(self, repo: str) -> bool:
            token = hub.gated.get(repo)
            return token is None or self.headers.get("Authorization") == f"Bearer {token}"

        def _tree(self, repo: str) -> None:
            if repo not in hub.repos:
                return self._status(404)
            if not self._allowed(repo):
                return self._status(401)
            listing = [{"type": "file", "path": p, "size": len(f.data), "oid": "0" * 40,
                        "lfs": {"oid": f.listed_sha, "size": len(f.data), "pointerSize": 134}}
                       for p, f in hub.repos[repo].items()]
            self._json(listing)

        def _resolve(self, repo: str, path: str) -> None:
            item = hub.repos.get(repo, {}).get(path)
            if item is None:
                return self._status(404)
            if not self._allowed(repo):
                return self._status(401)
            self.send_response(302)
            self.send_header("Location", f"/cdn/{item.listed_sha}")
            self.send_header("X-Linked-Etag", f'"{item.listed_sha}"')
            self.send_header("X-Linked-Size", str(len(item.data)))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _simple(self, project: str) -> None:
            links = []
            for filename, data in hub.wheels.items():
                dist = re.sub(r"[-_.]+", "-", filename.split("-")[0]).lower()
                if dist == project:
                    sha = hashlib.sha256(data).hexdigest()
                    links.append(f'<a href="/packages/{filename}#sha256={sha}">{filename}</a><br/>')
            if not links:
                return self._status(404)
            body = ("<!DOCTYPE html><html><body>" + "".join(links) + "</body></html>").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _bytes(self, data: bytes, head: bool) -> None:
            start = 0
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if match:
                start = int(match.group(1))
                if start >= len(data):
                    return self._status(416)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(data) - start))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if head:
                return
            body = memoryview(data)[start:]
            if hub.drop_after is not None and not match:
                cut, hub.drop_after = hub.drop_after, None
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)  # the peer sees the body end early
                return
            self.wfile.write(body)

        def _json(self, value: object) -> None:
            body = json.dumps(value).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _status(self, code: int) -> None:
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


class HubServer:
    def __init__(self, hub: FakeHub) -> None:
        self.hub = hub
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
        self.server.daemon_threads = True
        hub.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
