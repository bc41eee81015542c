"""llama.cpp's request body for a prepared `EngineRequest`: OpenAI-style, plus llama.cpp's own fields
(`cache_prompt`, `n_probs`, `json_schema`, `n_keep`, mirostat...)."""

from __future__ import annotations

from typing import Any, Literal

from deskml.core.types import EngineRequest, SamplingOptions
from deskml.core.validate import UINT32_MASK, clamp_int32
from deskml.engines.openai_wire import openai_message, tool_definitions

# llama.cpp's two generation entry points: a chat its template renders, or a completion of raw text.
Endpoint = Literal["chat", "completion"]


def request_body(request: EngineRequest, num_ctx: int) -> tuple[Endpoint, dict[str, Any]]:
    """(endpoint, body) for `request` on a context of `num_ctx` tokens per slot."""
    sampling = request.sampling
    if sampling.repeat_last_n is not None and not 0 <= sampling.repeat_last_n <= num_ctx:
        # Ollama's -1 means the whole context; llama.cpp wants the number (and a window past the
        # context costs memory for nothing)
        sampling = sampling.model_copy(update={"repeat_last_n": num_ctx})
    body = sampling_body(sampling)
    body["cache_prompt"] = True
    body["stream_options"] = {"include_usage": True}
    chat = request.prompt is None
    if request.format is not None:
        schema = request.format.schema_ if request.format.kind == "json_schema" else None
        # the chat endpoint reads OpenAI's response_format, the completion endpoint llama.cpp's json_schema
        if chat:
            body["response_format"] = (
                {"type": "json_object"} if schema is None
                else {"type": "json_schema", "json_schema": {"schema": schema}}
            )
        else:
            body["json_schema"] = {"type": "object"} if schema is None else schema
    if request.logprobs:
        body["logprobs"] = True
        # llama.cpp sends no logprobs at all for top_logprobs 0; ask for one alternative and let
        # the dialects cut the alternatives to what the client asked for
        body["top_logprobs"] = body["n_probs"] = max(1, request.top_logprobs)
    if not chat:
        body["prompt"] = request.prompt
        return "completion", body
    body["messages"] = [openai_message(m) for m in request.messages]
    if request.tools:  # the chat template formats the tools and llama.cpp parses the calls out of the reply
        body["tools"] = tool_definitions(request.tools)
        body["tool_choice"] = "auto"
        body["parallel_tool_calls"] = request.parallel_tool_calls
    return "chat", body


def sampling_body(options: SamplingOptions) -> dict[str, Any]:
    body: dict[str, Any] = {}
    mapping = {
        "temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p",
        "typical_p": "typical_p", "repeat_penalty": "repeat_penalty", "repeat_last_n": "repeat_last_n",
        "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty",
        "seed": "seed", "num_keep": "n_keep", "mirostat": "mirostat", "mirostat_tau": "mirostat_tau",
        "mirostat_eta": "mirostat_eta",
    }
    for ours, theirs in mapping.items():
        value = getattr(options, ours)
        if value is not None:
            body[theirs] = clamp_int32(value) if isinstance(value, int) else value
    if options.seed is not None:
        # llama.cpp's seed is 32-bit unsigned (0xFFFFFFFF = random); Ollama takes any integer (-1 = random)
        body["seed"] = options.seed & UINT32_MASK
    if options.num_predict is not None:
        body["max_tokens"] = clamp_int32(options.num_predict) if options.num_predict >= 0 else -1
    if options.stop:
        body["stop"] = options.stop
    if options.logit_bias:
        body["logit_bias"] = [[int(k), v] for k, v in options.logit_bias.items()]
    return body
