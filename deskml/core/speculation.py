"""Speculative decoding modes: the names a setting, a Modelfile PARAMETER or a request may give.

llama.cpp proposes several tokens at once and checks them in one batch: from a draft model with the
same vocabulary (`draft`), or from text already in the context (the n-gram modes). `auto` is
resolved when the model loads (`runtime.lifecycle`), because llama.cpp fixes the mode per loaded
context; a request asking for another mode reloads the model, as another num_ctx does.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from deskml.core.errors import BadRequest

SpeculativeMode = Literal["auto", "off", "ngram_simple", "ngram_map_k", "ngram_map_k4v", "ngram_mod", "draft"]
SPECULATIVE_MODES: tuple[str, ...] = get_args(SpeculativeMode)
_BY_NAME: dict[str, SpeculativeMode] = {mode: mode for mode in get_args(SpeculativeMode)}


def speculative_mode(value: Any, param: str) -> SpeculativeMode | None:
    """`value` as a mode name (None stays None); anything else is a 400 naming the choices."""
    if value is None:
        return None
    if isinstance(value, bool):  # `true`/`false` from a client that thinks of it as a switch
        value = "auto" if value else "off"
    mode = _BY_NAME.get(value.strip().lower()) if isinstance(value, str) else None
    if mode is None:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."  # never echo a huge value back
        raise BadRequest(f"{param} must be one of {', '.join(SPECULATIVE_MODES)}, not {shown}", param=param)
    return mode


def draft_fields(drafted: int, accepted: int) -> dict[str, int]:
    """The extension fields both dialects add to a reply's counts (Ollama's final line, OpenAI's usage):
    `draft_tokens` and `draft_accepted_tokens`, only when speculative decoding proposed something."""
    return {"draft_tokens": drafted, "draft_accepted_tokens": accepted} if drafted else {}
