"""An upstream server as an engine: OpenAI-compatible servers (vLLM, cloud APIs, LM Studio...),
Ollama servers and other deskml nodes, streamed into the same core events as the local llama.cpp
engine (TextDelta / ThinkingDelta / ToolCallDelta / Done), so the dialects never know the difference.

Errors are classified for the router: before the reply starts, a refusal that another backend might
not repeat (unreachable, 5xx, 429, wrong key, unknown model) is `UpstreamUnavailable`; a request the
upstream calls malformed is `BadRequest` (no other backend would take it either); a loop is
`LoopDetected`. Once events flow, any fault is `UpstreamError`: the client already has bytes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from deskml.core.errors import (
    BadRequest,
    DeskmlError,
    LoopDetected,
    UpstreamError,
    UpstreamUnavailable,
    from_engine,
)
from deskml.core.hops import NODE_HEADER
from deskml.core.types import ChatRequest, EmbedRequest, EmbedResult, Event, GenerateRequest
from deskml.engines import remote_wire as wire

log = logging.getLogger("deskml.remote")

UpstreamKind = Literal["openai", "ollama", "deskml"]


@dataclass(frozen=True)
class RemoteModel:
    name: str  # as the upstream calls it
    size: int = 0
    family: str = ""
    parameter_size: str = ""
    quantization: str = ""


class RemoteEngine:
    def __init__(
        self, name: str, kind: UpstreamKind, url: str, api_key: str | None = None, *,
        timeout: float = 120.0, connect_timeout: float = 5.0, verify: bool | str = True,
    ) -> None:
        self.name, self.kind = name, kind
        base = url.rstrip("/")
        if kind == "openai" and base.endswith("/v1"):
            base = base[: -len("/v1")]  # configs copy "https://api.example.com/v1"; paths below add /v1
        self.url = base
        self.node_id: str | None = None  # a deskml upstream's node id, learnt from its replies
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=base, headers=headers, verify=verify,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )

    async def close(self) -> None:
        await self._client.aclose()

    def _timeout(self, seconds: float | None) -> float | httpx.Timeout:
        """A per-call timeout, else the client's own (httpx reads `timeout=None` as "wait forever")."""
        return self._client.timeout if seconds is None else seconds

    # discovery ---------------------------------------------------------------------------------
    async def list_models(self, timeout: float | None = None,
                          headers: dict[str, str] | None = None) -> list[RemoteModel]:
        """The models the upstream serves; raises UpstreamUnavailable with the reason when it cannot say."""
        path = "/v1/models" if self.kind == "openai" else "/api/tags"
        try:
            response = await self._client.get(path, headers=headers, timeout=self._timeout(timeout))
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if response.status_code >= 400:
            raise self._refusal(response.status_code, response.text)
        self.node_id = response.headers.get(NODE_HEADER) or self.node_id
        try:
            payload = response.json()
        except ValueError:
            raise UpstreamUnavailable(f"upstream '{self.name}' at {self.url}{path} did not answer JSON: "
                                      f"is it a{'n OpenAI-compatible' if self.kind == 'openai' else 'n Ollama'} "
                                      "server?") from None
        if self.kind == "openai":
            return [RemoteModel(str(m.get("id"))) for m in payload.get("data") or [] if m.get("id")]
        models = []
        for m in payload.get("models") or []:
            details = m.get("details") or {}
            models.append(RemoteModel(
                str(m.get("name") or m.get("model")), int(m.get("size") or 0), str(details.get("family") or ""),
                str(details.get("parameter_size") or ""), str(details.get("quantization_level") or ""),
            ))
        return models

    async def accepts(self, model: str, headers: dict[str, str] | None = None, timeout: float | None = None) -> bool:
        """Whether an Ollama-style server (a deskml node) answers for `model` (`POST /api/show`): it may
        resolve names, such as aliases, that its model list does not show. Raises UpstreamUnavailable
        when it cannot say."""
        try:
            response = await self._client.post("/api/show", json={"model": model}, headers=headers,
                                               timeout=self._timeout(timeout))
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if response.status_code in {400, 404}:
            return False
        if response.status_code >= 300:
            raise self._refusal(response.status_code, response.text)
        return True

    # inference ---------------------------------------------------------------------------------
    async def stream(
        self, request: ChatRequest | GenerateRequest, *, headers: dict[str, str] | None = None
    ) -> AsyncGenerator[Event, None]:
        """The upstream's reply as core events (the `TextEngine` contract); `request.model` is the
        upstream's name for the model."""
        model = request.model
        if self.kind == "openai":
            if isinstance(request, ChatRequest):
                path, body = "/v1/chat/completions", wire.openai_chat_body(model, request)
            else:
                path, body = wire.openai_generate_body(model, request)
            async for event in self._stream_openai(path, body, model, headers):
                yield event
            return
        if isinstance(request, ChatRequest):
            path, body = "/api/chat", wire.ollama_chat_body(model, request)
        else:
            path, body = "/api/generate", wire.ollama_generate_body(model, request)
        async for event in self._stream_ollama(path, body, model, headers):
            yield event

    async def embed(self, model: str, request: EmbedRequest, headers: dict[str, str] | None = None) -> EmbedResult:
        if self.kind == "openai":
            payload = await self._post_json("/v1/embeddings", wire.openai_embed_body(model, request), headers)
            vectors, tokens = wire.openai_embeddings(payload)
        else:
            payload = await self._post_json("/api/embed", wire.ollama_embed_body(model, request), headers)
            vectors = [list(map(float, v)) for v in payload.get("embeddings") or []]
            tokens = int(payload.get("prompt_eval_count") or 0)
        return EmbedResult(model=model, embeddings=vectors, prompt_tokens=tokens)

    # transport ---------------------------------------------------------------------------------
    async def _post_json(self, path: str, body: dict[str, Any], headers: dict[str, str] | None) -> dict[str, Any]:
        try:
            response = await self._client.post(path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if response.status_code >= 400:
            raise self._refusal(response.status_code, response.text)
        try:
            payload = response.json()
        except ValueError:
            message = f"upstream '{self.name}' answered {path} with something other than JSON"
            raise UpstreamUnavailable(message) from None
        return payload if isinstance(payload, dict) else {}

    async def _lines(self, path: str, body: dict[str, Any], headers: dict[str, str] | None) -> AsyncIterator[str]:
        """Response lines; errors before the first line are classified, after it they are mid-reply."""
        started = False
        try:
            async with self._client.stream("POST", path, json=body, headers=headers) as response:
                if response.status_code >= 400:
                    raise self._refusal(response.status_code, (await response.aread()).decode("utf-8", "replace"))
                async for line in response.aiter_lines():
                    started = True
                    yield line
        except httpx.HTTPError as exc:
            if not started:
                raise self._unreachable(exc) from None
            raise UpstreamError(f"upstream '{self.name}' failed mid-reply: {_describe(exc)}") from None

    async def _stream_openai(
        self, path: str, body: dict[str, Any], model: str, headers: dict[str, str] | None
    ) -> AsyncIterator[Event]:
        reader = wire.OpenAIStream(model)
        finished = False
        async for line in self._lines(path, body, headers):
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                finished = True
                break
            payload = self._decode(data)
            message = wire.error_message(payload)
            if message is not None:
                raise from_engine(UpstreamError(f"upstream '{self.name}': {message}"))
            for event in reader.feed(payload):
                yield event
        if not finished:
            raise UpstreamError(f"upstream '{self.name}' ended the reply before it was complete")
        yield reader.done()

    async def _stream_ollama(
        self, path: str, body: dict[str, Any], model: str, headers: dict[str, str] | None
    ) -> AsyncIterator[Event]:
        reader = wire.OllamaStream(model)
        async for line in self._lines(path, body, headers):
            if not line.strip():
                continue
            payload = self._decode(line)
            message = wire.error_message(payload)
            if message is not None:
                raise from_engine(UpstreamError(f"upstream '{self.name}': {message}"))
            for event in reader.feed(payload):
                yield event
            if reader.final is not None:
                break
        if reader.final is None:
            raise UpstreamError(f"upstream '{self.name}' ended the reply before it was complete")
        yield reader.done()

    def _decode(self, text: str) -> dict[str, Any]:
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise UpstreamError(f"upstream '{self.name}' sent a line that is not JSON: {text[:80]!r}") from None
        return value if isinstance(value, dict) else {}

    def _unreachable(self, exc: httpx.HTTPError) -> UpstreamUnavailable:
        return UpstreamUnavailable(f"upstream '{self.name}' unreachable at {self.url}: {_describe(exc)}")

    def _refusal(self, status: int, text: str) -> DeskmlError:
        try:
            message = wire.error_message(json.loads(text)) or text
        except ValueError:
            message = text
        message = " ".join(message.split())[:300] or f"HTTP {status}"
        if status == 508:
            return LoopDetected(message)
        if status in {400, 413, 422}:
            return from_engine(BadRequest(f"upstream '{self.name}' rejected the request: {message}"))
        if status in {401, 403}:
            return UpstreamUnavailable(f"upstream '{self.name}' refused the API key ({status}): {message}")
        return from_engine(UpstreamUnavailable(f"upstream '{self.name}' answered {status}: {message}"))


def _describe(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text
