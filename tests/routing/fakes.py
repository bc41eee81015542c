"""Fake upstreams for the router tests, real HTTP servers in a thread: an OpenAI-compatible "cloud"
(SSE streams) and an Ollama server (NDJSON). Their replies are fixed texts built from the request, so
a test can tell which backend answered; `mode` makes them fail in the ways upstreams fail."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

# "ok"; "error500": every call answers 500; "drop": a stream stops after two pieces with the connection
# cut; "slow": pieces come 0.3 s apart (requests pile up, for balancing tests)
MODES = ("ok", "error500", "drop", "slow")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cloud_words(label: str, prompt: str) -> list[str]:
    return [f"{label} ", "says: ", prompt[:40]]


@dataclass
class FakeServer:
    label: str
    key: str | None = None
    models: list[str] = field(default_factory=list)
    mode: str = "ok"
    calls: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    active: int = 0
    peak: int = 0

    def __post_init__(self) -> None:
        self.port = self.port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle ---------------------------------------------------------------------------------
    def start(self) -> FakeServer:
        config = uvicorn.Config(self.app(), host="127.0.0.1", port=self.port, log_level="critical", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError(f"fake {self.label} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def app(self) -> Starlette:
        return Starlette(routes=self.routes())

    def routes(self) -> list[Route]:
        return []

    def _refuse(self, request: Request, inference: bool = True) -> Response | None:
        if self.key is not None and request.headers.get("authorization") != f"Bearer {self.key}":
            return JSONResponse({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                           "code": "invalid_api_key"}}, status_code=401)
        if self.mode == "error500" and inference:
            return JSONResponse({"error": {"message": "the fake is failing on purpose"}}, status_code=500)
        return None

    async def _pieces(self, words: list[str], render: Any) -> AsyncIterator[bytes]:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            for index, word in enumerate(words):
                if self.mode == "drop" and index == 2:
                    raise ConnectionResetError("the fake upstream dies mid-stream")
                if self.mode == "slow":
                    await asyncio.sleep(0.3)
                yield render(word)
        finally:
            self.active -= 1


class FakeCloud(FakeServer):
    """An OpenAI-compatible server: /v1/models, /v1/chat/completions, /v1/completions, /v1/embeddings."""

    def routes(self) -> list[Route]:
        return [
            Route("/v1/models", self.list_models),
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/v1/embeddings", self.embeddings, methods=["POST"]),
        ]

    async def list_models(self, request: Request) -> Response:
        refused = self._refuse(request, inference=False)
        if refused is not None:
            return refused
        return JSONResponse({"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]})

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.calls.append({"path": "/v1/chat/completions", "body": body, "headers": dict(request.headers)})
        refused = self._refuse(request)
        if refused is not None:
            return refused
        last = body["messages"][-1]
        prompt = last["content"] if isinstance(last["content"], str) else last["content"][0]["text"]
        created, model = int(time.time()), body["model"]

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        if body.get("tools"):  # answer with a call of the first tool, in two argument pieces
            name = body["tools"][0]["function"]["name"]
            pieces = [chunk({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_fake", "type": "function",
                                                                  "function": {"name": name, "arguments": ""}}]}),
                      chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
                      chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
                      chunk({}, "tool_calls")]
        else:
            pieces = [chunk({"role": "assistant", "content": w}) for w in cloud_words(self.label, prompt)]
            pieces.append(chunk({}, "stop"))
        usage = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}
        if not body.get("stream"):
            text = "".join(cloud_words(self.label, prompt))
            return JSONResponse({"id": "chatcmpl-fake", "object": "chat.completion", "created": created,
                                 "model": model, "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                     "role": "assistant", "content": text}}], "usage": usage["usage"]})
        lines = [*pieces, usage]

        def render(item: Any) -> bytes:
            return b"data: [DONE]\n\n" if item is None else f"data: {json.dumps(item)}\n\n".encode()

        return StreamingResponse(self._pieces([*lines, None], render), media_type="text/event-stream")

    async def completions(self, request: Request) -> Response:
        body = await request.json()
        self.calls.append({"path": "/v1/completions", "body": body, "headers": dict(request.headers)})
        refused = self._refuse(request)
        if refused is not None:
            return refused

        def render(item: Any) -> bytes:
            if item is None:
                return b"data: [DONE]\n\n"
            return ("data: " + json.dumps({"id": "cmpl-fake", "object": "text_completion", "model": body["model"],
                                           "choices": [{"index": 0, "text": item, "finish_reason": None}]})
                    + "\n\n").encode()

        return StreamingResponse(self._pieces([*cloud_words(self.label, body["prompt"]), None], render),
                                 media_type="text/event-stream")

    async def embeddings(self, request: Request) -> Response:
        body = await request.json()
        self.calls.append({"path": "/v1/embeddings", "body": body, "headers": dict(request.headers)})
        refused = self._refuse(request)
        if refused is not None:
            return refused
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0, 0.5]}
                for i, t in enumerate(inputs)]
        return JSONResponse({"object": "list", "data": data, "model": body["model"],
                             "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}})


class FakeOllama(FakeServer):
    """An Ollama server: /api/tags, /api/chat, /api/generate, /api/embed (NDJSON streams)."""

    def routes(self) -> list[Route]:
        return [
            Route("/api/tags", self.tags),
            Route("/api/chat", self.chat, methods=["POST"]),
            Route("/api/generate", self.generate, methods=["POST"]),
        ]

    async def tags(self, request: Request) -> Response:
        refused = self._refuse(request, inference=False)
        if refused is not None:
            return refused
        return JSONResponse({"models": [{"name": m, "model": m, "size": 1234, "digest": "0" * 64,
                                         "details": {"family": "fake", "parameter_size": "1M",
                                                     "quantization_level": "Q4_0"}} for m in self.models]})

    def _ndjson(self, body: dict[str, Any], prompt: str, chat: bool) -> Response:
        model = body["model"]

        def render(word: Any) -> bytes:
            if word is None:
                line: dict[str, Any] = {"model": model, "done": True, "done_reason": "stop", "total_duration": 1000,
                                        "prompt_eval_count": 5, "eval_count": 3, "eval_duration": 500}
                if chat:
                    line["message"] = {"role": "assistant", "content": ""}
                else:
                    line["response"] = ""
            elif chat:
                line = {"model": model, "done": False, "message": {"role": "assistant", "content": word}}
            else:
                line = {"model": model, "done": False, "response": word}
            return (json.dumps(line) + "\n").encode()

        return StreamingResponse(self._pieces([*cloud_words(self.label, prompt), None], render),
                                 media_type="application/x-ndjson")

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.calls.append({"path": "/api/chat", "body": body, "headers": dict(request.headers)})
        return self._refuse(request) or self._ndjson(body, body["messages"][-1]["content"], chat=True)

    async def generate(self, request: Request) -> Response:
        body = await request.json()
        self.calls.append({"path": "/api/generate", "body": body, "headers": dict(request.headers)})
        return self._refuse(request) or self._ndjson(body, body["prompt"], chat=False)
