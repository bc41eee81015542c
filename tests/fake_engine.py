"""A text engine that needs no model: the runtime's `LocalEngine` contract with deterministic replies.

`FakeLoader` stands in for llama.cpp in `ModelManager(loader=...)` or `create_app(engine_loader=...)`;
the registry still resolves names (the bundled SmolLM2's GGUF header gives the context length), but
nothing is loaded. By default a reply echoes the last user message (or the prompt) word by word, one
event per word, so tests can predict every event:

- `num_predict` cuts the reply to that many words (`Done.reason` "length");
- a response format makes the reply JSON (`{"echo": ...}`); under deskml's constrained tool-call schema
  it calls the first tool (tool_choice required or a function), or with `auto` a tool whose name the
  echoed text contains, else answers `{"content": ...}`;
- tools offered natively make the reply a call of the first tool with `{}`;
- `token_delay` spaces the events, `gate` (an asyncio.Event) holds the reply before its first event;
  `active` counts the streams running, so a test sees a cancelled stream end.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import AsyncGenerator, Callable

from deskml.core.types import (
    Done,
    EngineRequest,
    Event,
    TextDelta,
    Timings,
    ToolCall,
    ToolCallDelta,
)
from deskml.engines.contract import LoadConfig
from deskml.engines.devices import CPU_PLAN, GpuPlan

Reply = Callable[[EngineRequest], str]


def echo(request: EngineRequest) -> str:
    """The last user message, or the prompt: what the fake says unless told otherwise."""
    if request.prompt is not None:
        return request.prompt
    users = [m.content for m in request.messages if m.role == "user"]
    return users[-1] if users else ""


def words(text: str) -> list[str]:
    """The fake's tokens: each word with the spaces after it."""
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


class FakeEngine:
    def __init__(self, config: LoadConfig, *, reply: Reply = echo, token_delay: float = 0.0,
                 gate: asyncio.Event | None = None, drafts: bool = False) -> None:
        self.config = config
        self.drafts = drafts
        self.gpu: GpuPlan = CPU_PLAN
        self.reply = reply
        self.token_delay = token_delay
        self.gate = gate
        self.requests: list[EngineRequest] = []
        self.active = 0
        self.closed = False

    async def stream(self, request: EngineRequest) -> AsyncGenerator[Event, None]:
        self.requests.append(request)
        self.active += 1
        started = time.perf_counter_ns()
        try:
            if self.gate is not None:
                await self.gate.wait()
            first = time.perf_counter_ns()
            prompt_tokens = len(words(request.prompt or " ".join(m.content for m in request.messages)))
            if request.tools:  # native tool calling: call the first tool
                call = ToolCall(id="call_fake0", name=request.tools[0].name, arguments="{}")
                yield ToolCallDelta(index=0, id=call.id, name=call.name, arguments=call.arguments)
                yield Done(reason="tool_calls", tool_calls=[call], model=request.model,
                           timings=self._timings(prompt_tokens, 1, started, first))
                return
            tokens = words(self._text(request))
            limit = request.sampling.num_predict
            cut = limit is not None and 0 <= limit < len(tokens)
            if cut and limit is not None:
                tokens = tokens[:limit]
            for token in tokens:
                if self.token_delay:
                    await asyncio.sleep(self.token_delay)
                yield TextDelta(text=token)
            timings = self._timings(prompt_tokens, len(tokens), started, first)
            if self.drafts and self.config.speculative != "off":
                # Like an n-gram drafter: a reply word the prompt already had is drafted and accepted.
                seen = set(words(request.prompt or " ".join(m.content for m in request.messages)))
                timings.draft_tokens = timings.draft_accepted_tokens = sum(t in seen for t in tokens)
            yield Done(reason="length" if cut else "stop", model=request.model, timings=timings)
        finally:
            self.active -= 1

    def _text(self, request: EngineRequest) -> str:
        text = self.reply(request)
        if request.format is None:
            return text
        schema = request.format.schema_ or {}
        names = _tool_names(schema)
        if names:  # deskml's constrained tool-call schema
            alternatives = schema.get("anyOf") or [schema]
            content = next((a["properties"]["content"] for a in alternatives
                            if "content" in (a.get("properties") or {})), None)
            # tool_choice auto (an answer allowed): call a tool the user names; else call the first one
            called = next((n for n in names if n in text), None) if content is not None else names[0]
            if called is not None:
                return json.dumps({"tool_calls": [{"name": called, "arguments": {}}]})
            answer = text if content.get("type") == "string" else {"echo": text}
            return json.dumps({"content": answer})
        return json.dumps({"echo": text})

    @staticmethod
    def _timings(prompt_tokens: int, eval_count: int, started: int, first: int) -> Timings:
        return Timings(prompt_eval_count=prompt_tokens, prompt_eval_ns=first - started,
                       eval_count=eval_count, eval_ns=time.perf_counter_ns() - first)

    async def embed(self, inputs: list[str]) -> tuple[list[list[float]], int]:
        """A unit vector of 8 numbers per input, from its SHA-256: equal texts, equal vectors."""
        vectors = []
        for text in inputs:
            digest = hashlib.sha256(text.encode()).digest()[:8]
            raw = [b - 127.5 for b in digest]
            norm = sum(v * v for v in raw) ** 0.5
            vectors.append([v / norm for v in raw])
        return vectors, sum(len(words(t)) for t in inputs)

    def close(self) -> None:
        self.closed = True


def _tool_names(schema: object) -> list[str]:
    """Tool names found as `enum`/`const` of a `name` property anywhere in `schema`."""
    found: list[str] = []
    if isinstance(schema, dict):
        name = (schema.get("properties") or {}).get("name")
        if isinstance(name, dict):
            found += [str(n) for n in name.get("enum") or []] + ([str(name["const"])] if "const" in name else [])
        for value in schema.values():
            found += _tool_names(value)
    elif isinstance(schema, list):
        for value in schema:
            found += _tool_names(value)
    return found


class FakeLoader:
    """An `EngineLoader` making `FakeEngine`s with the given options; `engines` lists every load."""

    def __init__(self, *, reply: Reply = echo, token_delay: float = 0.0, gate: asyncio.Event | None = None,
                 drafts: bool = False) -> None:
        """`drafts`: report speculative decoding's counts when the load speculates (off by default, so the
        other tests see Ollama's fields only)."""
        self.reply, self.token_delay, self.gate, self.drafts = reply, token_delay, gate, drafts
        self.engines: list[FakeEngine] = []

    async def __call__(self, config: LoadConfig) -> FakeEngine:
        engine = FakeEngine(config, reply=self.reply, token_delay=self.token_delay, gate=self.gate,
                            drafts=self.drafts)
        self.engines.append(engine)
        return engine

    @property
    def engine(self) -> FakeEngine:
        """The latest load."""
        return self.engines[-1]
