"""HTTP client the CLI uses to talk to a running server, like the `ollama` CLI does, and the helpers
every command shares to build it and to turn its errors into an `Error:` line and an exit code."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx
import typer
from rich.console import Console
from rich.markup import escape

from deskml.settings import Settings

T = TypeVar("T")


class ServerUnavailable(Exception):
    pass


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def base_url(host: str, port: int) -> str:
    explicit = os.environ.get("DESKML_URL")
    if explicit:
        return explicit.rstrip("/")
    connect = "127.0.0.1" if host in {"0.0.0.0", "", "::"} else host
    if ":" in connect and not connect.startswith("["):
        connect = f"[{connect}]"
    return f"http://{connect}:{port}"


def error_message(response: httpx.Response) -> str:
    """The message of an error reply in any of the server's shapes (Ollama, OpenAI, ML backend, plain text)."""
    try:
        body = response.json()
    except ValueError:
        return response.text or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message", error))
    return str(error or body)


class Client:
    def __init__(self, url: str, api_key: str | None = None, timeout: float | None = None) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = url
        self.http = httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(timeout, connect=5.0))

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise ServerUnavailable(self.url) from None
        if response.status_code >= 400:
            raise ApiError(response.status_code, error_message(response))
        return response

    def get(self, path: str) -> Any:
        return self._send("GET", path).json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = self._send("POST", path, json=body)
        return response.json() if response.content else {}

    def delete(self, path: str, body: dict[str, Any]) -> None:
        self._send("DELETE", path, json=body)

    def head(self, path: str) -> int:
        try:
            return self.http.head(path).status_code
        except httpx.ConnectError:
            raise ServerUnavailable(self.url) from None

    def upload(self, path: str, file_path: str) -> None:
        with open(file_path, "rb") as handle:
            self._send("POST", path, content=handle)

    def stream(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        try:
            with self.http.stream("POST", path, json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ApiError(response.status_code, error_message(response))
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    item = json.loads(line)
                    if "error" in item:
                        raise ApiError(500, str(item["error"]))
                    yield item
        except httpx.ConnectError:
            raise ServerUnavailable(self.url) from None


def server_client(timeout: float | None = None) -> Client:
    """A client for the server the settings name (DESKML_URL, or DESKML_HOST and DESKML_PORT), sending
    DESKML_API_KEY when it is set; `timeout` None waits as long as a model takes to answer."""
    settings = Settings()
    return Client(base_url(settings.host, settings.port), os.environ.get("DESKML_API_KEY"), timeout=timeout)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `Error: message` on stderr and return the exit to raise. The message is escaped: it may
    quote `pip install 'deskml[embed]'`, which Rich would otherwise take for markup and drop."""
    Console(stderr=True).print(f"[red]Error:[/red] {escape(message)}", highlight=False)
    return typer.Exit(code)


def not_running(url: str) -> str:
    return f"could not connect to a deskml server at {url}. Start one with `deskml serve`."


@contextmanager
def api_errors() -> Iterator[None]:
    """Turn a server that is not there or an error reply inside the block into `fail` (exit 1)."""
    try:
        yield
    except ServerUnavailable as exc:
        raise fail(not_running(str(exc))) from None
    except ApiError as exc:
        raise fail(exc.message) from None


def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)`, failing with the server's message (exit 1) when the request fails."""
    with api_errors():
        return fn(*args, **kwargs)
