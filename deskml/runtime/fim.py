"""Fill-in-the-middle (a completion `suffix`) for GGUF models that have FIM tokens.

A code model trained for insertion marks prefix, suffix and middle with special tokens whose ids its
GGUF records (`tokenizer.ggml.fim_pre_token_id`, ... ; older files say `prefix_token_id`, ...). The
prompt is then `<PRE>prefix<SUF>suffix<MID>` and the model writes the middle. llama.cpp parses special
tokens in a raw completion prompt, so the token texts are written into the prompt as text.
"""

from __future__ import annotations

from pathlib import Path

from deskml.runtime.gguf import GGUFInfo, read_gguf

_ID_KEYS = {
    "pre": ("tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id"),
    "suf": ("tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.suffix_token_id"),
    "mid": ("tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.middle_token_id"),
}


def fim_token_ids(info: GGUFInfo) -> tuple[int, int, int] | None:
    """The (prefix, suffix, middle) token ids, or None when the model cannot insert."""
    found: list[int] = []
    for keys in _ID_KEYS.values():
        value = next((info.metadata[k] for k in keys if isinstance(info.metadata.get(k), int)), None)
        if value is None or value < 0:
            return None
        found.append(value)
    return found[0], found[1], found[2]


def fim_token_texts(path: Path, ids: tuple[int, int, int]) -> tuple[str, str, str] | None:
    """The texts of the FIM tokens, read from the GGUF's vocabulary (None if an id is out of range)."""
    tokens = read_gguf(path, keep_arrays=True).metadata.get("tokenizer.ggml.tokens")
    if not isinstance(tokens, list) or max(ids) >= len(tokens):
        return None
    return str(tokens[ids[0]]), str(tokens[ids[1]]), str(tokens[ids[2]])


def fim_prompt(tokens: tuple[str, str, str], prefix: str, suffix: str) -> str:
    pre, suf, mid = tokens
    return f"{pre}{prefix}{suf}{suffix}{mid}"
