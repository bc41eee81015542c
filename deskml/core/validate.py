"""Input checks shared by every dialect, so that no engine ever sees text or numbers it cannot take.

llama.cpp parses what it is given as JSON text and reads integers as 32-bit: a lone UTF-16 surrogate
(`"\\ud800"`, valid JSON) makes it raise, and 10^18 wraps to a negative number. Both are the
client's mistake, so they get a 400 that names the field, before any model is loaded or queued.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from deskml.core.errors import BadRequest
from deskml.core.types import SamplingOptions

INT32_MAX = 2**31 - 1
UINT32_MASK = 2**32 - 1

# A decoded JSON string holds a surrogate code point only when it came from an unpaired escape:
# a valid pair ("\ud83d\ude00") decodes to one astral character.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _no_json(_value: object) -> None:
    return None  # bytes (images) and the like: not text


def lone_surrogate_at(value: object, path: str = "") -> str | None:
    """The path (`messages[2].content`) of the first string or key holding a lone surrogate, or None.

    Pydantic models are read by their wire names (extras included). Clean input, the usual case, costs
    one C-speed JSON encoding; only a failing one is walked, without recursion, so a deeply nested JSON
    schema cannot exhaust the stack."""
    data = value.model_dump(by_alias=True) if isinstance(value, BaseModel) else value
    try:
        json.dumps(data, ensure_ascii=False, default=_no_json).encode("utf-8")
        return None
    except UnicodeEncodeError:
        pass
    except (TypeError, ValueError):  # not JSON-shaped (NaN, odd keys): walk it
        pass
    stack: list[tuple[object, str]] = [(data, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return where
        elif isinstance(item, Mapping):
            children = []
            for key, child in item.items():
                if isinstance(key, str) and _SURROGATE.search(key):
                    return where or "a key"
                children.append((child, _join(where, str(key))))
            stack.extend(reversed(children))
        elif isinstance(item, list | tuple):
            stack.extend(reversed([(child, f"{where}[{i}]") for i, child in enumerate(item)]))
    return None


def check_unicode(value: object, path: str = "") -> None:
    """Refuse text no UTF-8 engine or database can take: a lone surrogate. The message names the field
    and never repeats the text (which may be a long private prompt)."""
    where = lone_surrogate_at(value, path)
    if where is not None:
        raise BadRequest(
            f"invalid Unicode (lone surrogate) in {where or 'the request'}: a \\ud800-\\udfff escape "
            "must be one half of a pair", param=where or None,
        )


def sampling_options(values: Mapping[str, Any], names: Mapping[str, str]) -> SamplingOptions:
    """SamplingOptions from `values`, checked; `names` maps core field names to the dialect's
    (`num_predict` -> `options.num_predict` or `max_tokens`) for the 400's message."""
    try:
        options = SamplingOptions(**values)
    except ValidationError as exc:
        parts = []
        for error in exc.errors():
            field = ".".join(str(p) for p in error.get("loc", ()))
            parts.append(f"{names.get(field, field)}: {error.get('msg')}")
        raise BadRequest("invalid options: " + "; ".join(parts), param=names.get("", None)) from None
    check_sampling(options, names)
    return options


def check_sampling(options: SamplingOptions, names: Mapping[str, str]) -> None:
    """400 for sampling values llama.cpp would wrap (32-bit) or refuse; `names` maps core field names to
    the dialect's. Values that merely saturate
    (top_k, seed) are left for the engine layer to clamp, as Ollama accepts any integer there."""
    def name(field: str) -> str:
        return names.get(field, field)

    if options.num_predict is not None and options.num_predict > INT32_MAX:
        raise BadRequest(f"{name('num_predict')} must be at most {INT32_MAX} (a negative value means no limit), "
                         f"not {options.num_predict}", param=name("num_predict"))
    for field in ("repeat_last_n", "num_keep"):
        value = getattr(options, field)
        if value is not None and not -1 <= value <= INT32_MAX:
            raise BadRequest(f"{name(field)} must be between -1 and {INT32_MAX}, not {value}", param=name(field))
    if options.mirostat is not None and options.mirostat not in (0, 1, 2):
        raise BadRequest(f"{name('mirostat')} must be 0 (off), 1 or 2, not {options.mirostat}",
                         param=name("mirostat"))
    for token in options.logit_bias or {}:
        if not 0 <= token <= INT32_MAX:
            raise BadRequest(f"{name('logit_bias')} keys must be token ids (0 to {INT32_MAX}), not {token}",
                             param=name("logit_bias"))


def clamp_int32(value: int) -> int:
    return max(-INT32_MAX - 1, min(INT32_MAX, value))
