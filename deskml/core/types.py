"""Internal request, event and result types shared by every dialect.

Dialects translate their wire types to these and back; the runtime and engines only see these.
Engines are stream-first: they yield `Event`s, and a non-streaming reply is the same stream collected.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from deskml.core.speculation import SpeculativeMode


class SamplingOptions(BaseModel):
    """Per-request sampling. None means "use the model's parameter, else the server default"."""

    # NaN or infinity would reach llama.cpp as JSON it cannot parse
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    typical_p: float | None = None
    repeat_penalty: float | None = None
    repeat_last_n: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    num_predict: int | None = None
    stop: list[str] | None = None
    num_keep: int | None = None
    mirostat: int | None = None
    mirostat_tau: float | None = None
    mirostat_eta: float | None = None
    logit_bias: dict[int, float] | None = None

    def merged_over(self, base: SamplingOptions) -> SamplingOptions:
        """Fields set here win; unset ones fall back to `base`."""
        data = base.model_dump(exclude_none=True)
        data.update(self.model_dump(exclude_none=True))
        return SamplingOptions(**data)


class ToolCall(BaseModel):
    id: str = ""
    name: str
    arguments: str = "{}"  # JSON text, as the engine produced it

    def arguments_object(self) -> dict[str, Any]:
        try:
            value = json.loads(self.arguments or "{}")
        except json.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}


def ollama_tool_calls(calls: list[ToolCall], *, numbered: bool = True) -> list[dict[str, Any]]:
    """Tool calls in Ollama's shape (arguments as an object). `numbered` adds the id and index Ollama's
    replies carry; a request to an Ollama server and a Go template's `.ToolCalls` take the plain shape."""
    if not numbered:
        return [{"function": {"name": c.name, "arguments": c.arguments_object()}} for c in calls]
    return [{"id": c.id, "function": {"index": i, "name": c.name, "arguments": c.arguments_object()}}
            for i, c in enumerate(calls)]


def openai_tool_calls(calls: list[ToolCall]) -> list[dict[str, Any]]:
    """Tool calls in OpenAI's shape (arguments as JSON text), for replies and for requests to OpenAI-style servers."""
    return [{"id": c.id or f"call_{i}", "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for i, c in enumerate(calls)]


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    images: list[bytes] = Field(default_factory=list)
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None  # tool name for role=tool
    thinking: str | None = None


class Tool(BaseModel):
    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ToolChoice(BaseModel):
    mode: Literal["auto", "none", "required", "function"] = "auto"
    name: str | None = None


class ResponseFormat(BaseModel):
    """Structured output: any JSON object, or JSON valid against `schema`."""

    kind: Literal["json", "json_schema"]
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")

    model_config = ConfigDict(populate_by_name=True)


class InferenceCommon(BaseModel):
    model: str
    options: SamplingOptions = Field(default_factory=SamplingOptions)
    num_ctx: int | None = None
    num_gpu: int | None = None  # layers on GPUs; None = automatic (a load option, like num_ctx)
    main_gpu: int | None = None
    format: ResponseFormat | None = None
    keep_alive: float | None = None  # seconds; None = server default; <0 forever; 0 unload after
    truncate: bool = False
    logprobs: bool = False
    top_logprobs: int = 0
    # deskml extension: how the model speculates (a load option like num_ctx); None = the model's
    # PARAMETER, else the server's setting.
    speculative: SpeculativeMode | None = None


class ChatRequest(InferenceCommon):
    messages: list[ChatMessage]
    tools: list[Tool] = Field(default_factory=list)
    tool_choice: ToolChoice = Field(default_factory=ToolChoice)
    parallel_tool_calls: bool = True


class GenerateRequest(InferenceCommon):
    """Single-prompt generation. With `raw` the prompt goes to the model as is; otherwise it is
    wrapped by the model's chat template (or `template`) with `system`."""

    prompt: str
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    raw: bool = False
    images: list[bytes] = Field(default_factory=list)


class EngineRequest(BaseModel):
    """A generation prepared for an engine that runs the model itself (`engines.contract.LocalEngine`).

    The runtime has applied the Modelfile, planned tool calls and resolved sampling (request over
    Modelfile over defaults); the engine only encodes this for its runtime. A chat when `prompt` is
    None (the model's chat template renders `messages`), else a completion of `prompt` as is (raw,
    fill-in-the-middle, or a Go template deskml rendered itself).
    """

    model: str  # the name the Done event reports
    messages: list[ChatMessage] = Field(default_factory=list)
    prompt: str | None = None
    sampling: SamplingOptions = Field(default_factory=SamplingOptions)
    format: ResponseFormat | None = None  # constrain the reply to JSON (a schema, for constrained tool calls too)
    tools: list[Tool] = Field(default_factory=list)  # offered to the chat template's own tool calling
    parallel_tool_calls: bool = True
    logprobs: bool = False
    top_logprobs: int = 0


class EmbedRequest(BaseModel):
    model: str
    inputs: list[str]
    truncate: bool = True
    dimensions: int | None = None
    keep_alive: float | None = None
    num_ctx: int | None = None
    num_gpu: int | None = None
    main_gpu: int | None = None


class Timings(BaseModel):
    """Durations in nanoseconds, as Ollama reports them."""

    total_ns: int = 0
    load_ns: int = 0
    queue_ns: int = 0
    prompt_eval_count: int = 0
    prompt_eval_ns: int = 0
    cached_tokens: int = 0
    eval_count: int = 0
    eval_ns: int = 0
    draft_tokens: int = 0  # tokens speculative decoding proposed (drafted), of which...
    draft_accepted_tokens: int = 0  # ...the model accepted these

    @property
    def prompt_tokens(self) -> int:
        return self.prompt_eval_count + self.cached_tokens


# Most alternatives a token may carry, in either dialect (OpenAI's chat bound).
MAX_TOP_LOGPROBS = 20


class TokenLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None
    top: list[tuple[str, float]] = Field(default_factory=list)


class TextDelta(BaseModel):
    kind: Literal["text"] = "text"
    text: str
    logprobs: list[TokenLogprob] = Field(default_factory=list)


class ThinkingDelta(BaseModel):
    kind: Literal["thinking"] = "thinking"
    text: str


class ToolCallDelta(BaseModel):
    """A piece of a tool call being streamed: the first piece carries id and name."""

    kind: Literal["tool_call"] = "tool_call"
    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


DoneReason = Literal["stop", "length", "tool_calls", "load", "unload", "cancelled", "error"]


class Done(BaseModel):
    kind: Literal["done"] = "done"
    reason: DoneReason = "stop"
    timings: Timings = Field(default_factory=Timings)
    tool_calls: list[ToolCall] = Field(default_factory=list)
    model: str = ""


Event = Annotated[TextDelta | ThinkingDelta | ToolCallDelta | Done, Field(discriminator="kind")]


class GenerationResult(BaseModel):
    """A whole reply, collected from the event stream."""

    text: str = ""
    thinking: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    logprobs: list[TokenLogprob] = Field(default_factory=list)
    done: Done = Field(default_factory=Done)


class EmbedResult(BaseModel):
    model: str
    embeddings: list[list[float]]
    prompt_tokens: int = 0
    timings: Timings = Field(default_factory=Timings)


def collect(events: list[TextDelta | ThinkingDelta | ToolCallDelta | Done]) -> GenerationResult:
    """Fold a finished event list into a result (the non-streaming reply)."""
    result = GenerationResult()
    text: list[str] = []
    thinking: list[str] = []
    for event in events:
        if isinstance(event, TextDelta):
            text.append(event.text)
            result.logprobs.extend(event.logprobs)
        elif isinstance(event, ThinkingDelta):
            thinking.append(event.text)
        elif isinstance(event, Done):
            result.done = event
            result.tool_calls = list(event.tool_calls)
    result.text = "".join(text)
    result.thinking = "".join(thinking)
    return result
