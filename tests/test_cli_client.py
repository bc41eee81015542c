"""The CLI's shared HTTP helpers (deskml.cli.client) against a small real HTTP server that answers every
request with an error: the message is printed literally on stderr (Rich markup such as `[embed]` is not
eaten), the exit code is 1, and the API key from DESKML_API_KEY is sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from deskml.cli.main import app

MESSAGE = "embedding models need an extra: pip install 'deskml[embed]' ([red]not markup[/red])"


@dataclass
class ErrorServer:
    url: str
    body: dict[str, object]
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)


@pytest.fixture
def error_server() -> Iterator[ErrorServer]:
    server = ErrorServer(url="", body={"error": MESSAGE})

    class Handler(BaseHTTPRequestHandler):
        def _reply(self) -> None:
            server.seen.append((self.command, self.path, self.headers.get("Authorization")))
            payload = json.dumps(server.body).encode()
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = _reply

        def log_message(self, format: str, *args: object) -> None:  # quiet test output
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def invoke(server: ErrorServer, *args: str) -> tuple[int, str, str]:
    env = {"DESKML_URL": server.url, "DESKML_API_KEY": "sk-test", "COLUMNS": "200"}
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, " ".join(result.stderr.split())


@pytest.mark.parametrize("command", [["jobs", "show", "j1"], ["jobs", "cancel", "j1"], ["jobs", "watch", "j1"],
                                     ["jobs", "list"], ["list"], ["pull", "all-minilm"]])
def test_error_messages_are_printed_literally(error_server: ErrorServer, command: list[str]) -> None:
    code, stdout, stderr = invoke(error_server, *command)
    assert code == 1, stdout + stderr
    assert f"Error: {MESSAGE}" in stderr
    assert error_server.seen and all(auth == "Bearer sk-test" for _, _, auth in error_server.seen)


def test_jobs_watch_reads_an_openai_shaped_error(error_server: ErrorServer) -> None:
    error_server.body = {"error": {"message": MESSAGE, "type": "invalid_request_error"}}
    code, _, stderr = invoke(error_server, "jobs", "watch", "j1")
    assert code == 1 and f"Error: {MESSAGE}" in stderr
    assert error_server.seen == [("GET", "/api/jobs/j1/events", "Bearer sk-test")]


def test_no_server_is_exit_1_naming_the_url() -> None:
    url = "http://127.0.0.1:9"  # the discard port: nothing listens there
    result = CliRunner().invoke(app, ["jobs", "show", "j1"], env={"DESKML_URL": url, "COLUMNS": "200"})
    assert result.exit_code == 1
    said = " ".join(result.stderr.split())
    assert f"Error: could not connect to a deskml server at {url}. Start one with `deskml serve`." in said
