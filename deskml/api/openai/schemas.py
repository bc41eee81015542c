"""OpenAI API wire types (platform.openai.com/docs/api-reference), field names as OpenAI spells them.

Requests accept unknown fields (OpenAI adds fields often; clients send vendor extras); the translate
layer logs them at debug. Responses are built as plain dicts in translate.py, checked in the tests
against the official `openai` package's own response models.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


Stop = str | list[str] | None
# A prompt or embedding input: text, texts, or token ids (which deskml refuses with a clear 400).
TextInput = str | list[str] | list[int] | list[list[int]]


class StreamOptions(_Loose):
    include_usage: bool | None = None


class FunctionCall(_Loose):
    name: str
    arguments: str | dict[str, Any] = "{}"


class ToolCallWire(_Loose):
    id: str | None = None
    type: str = "function"
    function: FunctionCall


class ImageUrl(_Loose):
    url: str
    detail: str | None = None


class ContentPart(_Loose):
    type: str
    text: str | None = None
    image_url: ImageUrl | str | None = None
    refusal: str | None = None


class Message(_Loose):
    role: str
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallWire] | None = None
    tool_call_id: str | None = None
    function_call: FunctionCall | None = None  # deprecated single call on an assistant message
    refusal: str | None = None


class FunctionDef(_Loose):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(_Loose):
    type: str = "function"
    function: FunctionDef


class NamedFunction(_Loose):
    name: str


class NamedToolChoice(_Loose):
    type: str = "function"
    function: NamedFunction


class JsonSchemaFormat(_Loose):
    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class ResponseFormat(_Loose):
    type: str
    json_schema: JsonSchemaFormat | None = None


class _Sampling(_Loose):
    """Sampling fields shared by chat and completions, with llama.cpp-style extras that local
    OpenAI clients send (top_k, min_p, repeat_penalty)."""

    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    stop: Stop = None
    max_tokens: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    seed: int | None = None
    user: str | None = None
    top_k: int | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None
    speculative: str | bool | None = None  # deskml extension: a speculative decoding mode (docs/speculative.md)


class ChatCompletionRequest(_Sampling):
    model: str
    messages: list[Message]
    max_completion_tokens: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    response_format: ResponseFormat | None = None
    tools: list[ToolDef] | None = None
    tool_choice: str | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    functions: list[FunctionDef] | None = None  # deprecated form of tools
    function_call: str | NamedFunction | None = None  # deprecated form of tool_choice


class CompletionRequest(_Sampling):
    model: str
    prompt: TextInput | None = None
    suffix: str | None = None
    echo: bool | None = None
    logprobs: int | None = None
    best_of: int | None = None


class EmbeddingRequest(_Loose):
    model: str
    input: TextInput
    encoding_format: str | None = None
    dimensions: int | None = None
    user: str | None = None
