"""Ollama API wire types (github.com/ollama/ollama api/types.go), field names as Ollama spells them.

Requests accept unknown fields (Ollama ignores them); the translate layer logs them at debug.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


KeepAlive = str | float | int | None
Format = str | dict[str, Any] | None


class ToolCallFunction(_Loose):
    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)
    index: int | None = None


class ToolCallWire(_Loose):
    id: str | None = None
    function: ToolCallFunction


class Message(_Loose):
    role: str
    content: str | None = ""
    images: list[str] | None = None
    tool_calls: list[ToolCallWire] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None
    thinking: str | None = None


class ToolFunction(_Loose):
    name: str
    description: str | None = ""
    parameters: dict[str, Any] | None = None


class ToolWire(_Loose):
    type: str = "function"
    function: ToolFunction


class GenerateRequest(_Loose):
    model: str
    prompt: str | None = ""
    suffix: str | None = None
    images: list[str] | None = None
    format: Format = None
    options: dict[str, Any] | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    stream: bool | None = None
    raw: bool | None = False
    keep_alive: KeepAlive = None
    think: bool | str | None = None
    truncate: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


class ChatRequest(_Loose):
    model: str
    messages: list[Message] | None = None
    tools: list[ToolWire] | None = None
    format: Format = None
    options: dict[str, Any] | None = None
    stream: bool | None = None
    keep_alive: KeepAlive = None
    think: bool | str | None = None
    truncate: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


class EmbedRequest(_Loose):
    model: str
    input: str | list[str] | None = None
    truncate: bool | None = True
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None
    dimensions: int | None = None


class EmbeddingsRequest(_Loose):
    """The older `/api/embeddings` endpoint."""

    model: str
    prompt: str | None = ""
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None


class ModelRequest(_Loose):
    """`/api/show`, `/api/delete`, `/api/pull`: Ollama accepts `model`, older clients send `name`."""

    model: str | None = None
    name: str | None = None
    verbose: bool | None = False
    insecure: bool | None = None
    stream: bool | None = None

    def target(self) -> str | None:
        return self.model or self.name


class CopyRequest(_Loose):
    source: str
    destination: str


class CreateRequest(_Loose):
    model: str | None = None
    name: str | None = None  # older clients
    from_: str | None = Field(default=None, alias="from")
    files: dict[str, str] | None = None
    adapters: dict[str, str] | None = None
    template: str | None = None
    license: str | list[str] | None = None
    system: str | None = None
    parameters: dict[str, Any] | None = None
    messages: list[Message] | None = None
    quantize: str | None = None
    # deskml extension: the model that drafts for this one (speculative decoding), as a Modelfile's DRAFT;
    # "" or "none" removes the draft the `from` model has.
    draft: str | None = None
    stream: bool | None = None
    modelfile: str | None = None  # legacy: the Modelfile text itself
    path: str | None = None  # legacy

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class ModelDetails(BaseModel):
    parent_model: str = ""
    format: str = "gguf"
    family: str = ""
    families: list[str] | None = None
    parameter_size: str = ""
    quantization_level: str = ""


class ListModel(BaseModel):
    name: str
    model: str
    modified_at: str
    size: int
    digest: str
    details: ModelDetails
    # deskml extra: the job the model does (llm, embedding, asr, tts, classify, ocr, detect, image, ...)
    kind: str = "llm"
    # deskml extra: whether /api/delete can remove it (not a bundled package's or a service's model)
    removable: bool = True


class ListResponse(BaseModel):
    models: list[ListModel]


class ProcessModel(BaseModel):
    name: str
    model: str
    size: int
    digest: str
    details: ModelDetails
    expires_at: str
    size_vram: int = 0
    context_length: int
    # deskml extras: how busy the model is (Ollama clients ignore unknown fields)
    slots: int
    running: int
    queued: int
    kind: str
    # where it runs, in Ollama's `ollama ps` words: "100% CPU", "100% GPU", "48%/52% CPU/GPU"
    processor: str = "100% CPU"
    device: str = "cpu"  # service models: the torch/onnxruntime/CTranslate2 device ("cuda", "mps", "cpu")
    speculative: str = "off"  # deskml: the copy's speculative decoding mode, `auto` resolved (docs/speculative.md)


class ProcessResponse(BaseModel):
    models: list[ProcessModel]


class ShowResponse(BaseModel):
    license: str = ""
    modelfile: str
    parameters: str = ""
    template: str = ""
    system: str = ""
    details: ModelDetails
    model_info: dict[str, Any]
    capabilities: list[str]
    modified_at: str
    messages: list[dict[str, Any]] | None = None
    kind: str = "llm"  # deskml extra, as in /api/tags


class VersionResponse(BaseModel):
    version: str
    deskml: str
