"""The router with fake upstreams, in process: the retry cut-off is the client's first byte (a whole reply
is retried after a failure anywhere in it, a stream only before its first event), a stream that failed
mid-reply is recorded with its error, a node that only forwards (DESKML_FORWARD_ONLY), and names a node
accepts without listing them (aliases, or what a deskml node says when asked)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from deskml.app import create_app
from deskml.core.errors import BadRequest
from tests.conftest import make_settings
from tests.routing.conftest import wait_for
from tests.routing.fakes import FakeOllama


def block(server: FakeOllama, name: str, kind: str = "ollama", prefix: str = "") -> str:
    return f'[[upstreams]]\nname = "{name}"\nkind = "{kind}"\nurl = "{server.url}"\nprefix = "{prefix}"\n'


class AliasingNode(FakeOllama):
    """A deskml-like node that lists one name but accepts others too, as a node's aliases do (`/api/show`)."""

    def __init__(self, label: str, models: list[str], accepts: list[str]) -> None:
        super().__init__(label, models=models)
        self.accepts = accepts
        self.shown: list[str] = []

    def routes(self) -> list[Route]:
        return [*super().routes(), Route("/api/show", self.show, methods=["POST"])]

    async def show(self, request: Request) -> Response:
        name = (await request.json())["model"]
        self.shown.append(name)
        if name in self.accepts or name in self.models:
            return JSONResponse({"modelfile": "", "details": {"family": "fake"}})
        return JSONResponse({"error": f"model '{name}' not found"}, status_code=404)


@pytest.fixture
def pair() -> Iterator[tuple[FakeOllama, FakeOllama]]:
    broken = FakeOllama("broken", models=["m1"]).start()
    good = FakeOllama("good", models=["m1"]).start()
    broken.mode = "drop"  # two pieces, then the connection is cut
    yield broken, good
    broken.stop()
    good.stop()


def ndjson(response: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def test_whole_reply_is_retried_after_a_failure_mid_reply(routed_app: Any, pair: tuple[FakeOllama, FakeOllama]) -> None:
    broken, good = pair
    toml = '[router]\nstrategy = "local_first"\n' + block(broken, "broken") + block(good, "good")
    with routed_app(toml) as client:
        for path, body in (("/api/chat", {"messages": [{"role": "user", "content": "hi"}]}),
                           ("/api/generate", {"prompt": "hi"})):
            reply = client.post(path, json={"model": "m1", "stream": False, **body})
            assert reply.status_code == 200, reply.text  # before: 502 although the client had no byte yet
            text = reply.json()["message"]["content"] if path == "/api/chat" else reply.json()["response"]
            assert text == "good says: hi"
        openai = client.post("/v1/chat/completions",
                             json={"model": "m1", "messages": [{"role": "user", "content": "q"}]})
        assert openai.status_code == 200 and openai.json()["choices"][0]["message"]["content"] == "good says: q"
        assert len(broken.calls) == 3 and len(good.calls) == 3  # each went to the broken one first
        metrics = client.get("/metrics").text
        assert 'deskml_upstream_requests_total{outcome="failed_mid_reply",upstream="broken"}' in metrics


def test_stream_failing_after_its_first_event_ends_with_an_error_and_is_recorded(
    routed_app: Any, pair: tuple[FakeOllama, FakeOllama]
) -> None:
    broken, good = pair
    toml = '[router]\nstrategy = "local_first"\n' + block(broken, "broken") + block(good, "good")
    with routed_app(toml, history_flush_seconds=0.1) as client:
        reply = client.post("/api/chat", json={"model": "m1", "messages": [{"role": "user", "content": "hey"}]})
        lines = ndjson(reply)
        assert reply.status_code == 200 and [x["message"]["content"] for x in lines[:-1]] == ["broken ", "says: "]
        assert "upstream 'broken' failed mid-reply" in lines[-1]["error"]  # the client had bytes: no retry
        assert good.calls == []
        request_id = reply.headers["x-request-id"]

        def row() -> dict[str, Any] | None:
            items = client.get("/api/history", params={"path": "/api/chat"}).json()["items"]
            return next((i for i in items if i["request_id"] == request_id), None)

        wait_for(lambda: row() is not None, what="the history row")
        recorded = row()
        assert recorded is not None
        # the convention of a stream ended early (as by a shutdown drain): the status sent, and why it ended
        assert recorded["status"] == 200 and "failed mid-reply" in (recorded["error"] or "")
        sse = client.post("/v1/chat/completions", json={"model": "m1", "stream": True,
                                                        "messages": [{"role": "user", "content": "x"}]})
        assert '"error"' in sse.text and "mid-reply" in sse.text


def test_forward_only_node_never_answers_from_its_own_models(tmp_path: Path) -> None:
    upstream = FakeOllama("far", models=["m1"]).start()
    path = tmp_path / "upstreams.toml"
    path.write_text(block(upstream, "far"))
    try:
        settings = make_settings(tmp_path / "d", upstreams_file=path, cache=False, forward_only=True)
        with TestClient(create_app(settings)) as client:
            body = {"stream": False, "messages": [{"role": "user", "content": "hi"}]}
            # smollm2:135m is installed here, but a dedicated router does not answer with it
            local = client.post("/api/chat", json={"model": "smollm2:135m", **body})
            assert local.status_code == 404, local.text
            assert "smollm2:135m" in local.json()["error"]
            assert client.post("/v1/chat/completions", json={"model": "smollm2", **body}).status_code == 404
            assert client.post("/api/embed", json={"model": "all-minilm", "input": "x"}).status_code == 404
            routed = client.post("/api/chat", json={"model": "m1", **body})
            assert routed.status_code == 200 and routed.json()["message"]["content"] == "far says: hi"
            upstream.stop()
            down = client.post("/api/chat", json={"model": "m1", **body})
            assert down.status_code == 503 and "no backend could answer 'm1'" in down.json()["error"]
            assert down.headers["retry-after"]
    finally:
        upstream.stop()
    with pytest.raises(BadRequest, match="DESKML_UPSTREAMS_FILE"), \
            TestClient(create_app(make_settings(tmp_path / "e", forward_only=True))):
        pass


def test_names_resolve_as_the_nodes_resolve_them(routed_app: Any) -> None:
    node = AliasingNode("node", models=["smollm2:135m", "tiny:1b"], accepts=["tiny-alias", "tiny-alias:latest"])
    node.start()
    try:
        with routed_app(block(node, "node", kind="deskml"), forward_only=True) as client:
            body = {"stream": False, "messages": [{"role": "user", "content": "q"}]}
            # "smollm2" is smollm2:latest, listed nowhere; deskml's alias rules make it smollm2:135m
            reply = client.post("/api/chat", json={"model": "smollm2", **body})
            assert reply.status_code == 200, reply.text
            assert reply.json()["message"]["content"] == "node says: q"
            assert node.calls[-1]["body"]["model"] == "smollm2:135m" and reply.json()["model"] == "smollm2:135m"
            assert node.shown == []  # no need to ask
            # a name only the node knows: asked once (/api/show), then remembered
            for _ in range(2):
                reply = client.post("/api/chat", json={"model": "tiny-alias", **body})
                assert reply.status_code == 200 and node.calls[-1]["body"]["model"] == "tiny-alias"
            assert node.shown == ["tiny-alias"]
            for _ in range(2):
                assert client.post("/api/chat", json={"model": "nothing", **body}).status_code == 404
            assert node.shown == ["tiny-alias", "nothing"]  # a refusal is remembered as well
            openai = client.post("/v1/chat/completions", json={"model": "tiny-alias", **body})
            assert openai.status_code == 200 and openai.json()["model"] == "tiny-alias"
    finally:
        node.stop()
