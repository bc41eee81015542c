"""A small GGUF header reader: metadata key/values and the parameter count.

Used for `/api/show` (`model_info`, `details`) and to read the model's own chat template
without loading the weights. Large arrays (the tokenizer vocabulary) are skipped unless asked for;
`read_vocabulary` streams the vocabulary through a hash instead of keeping it, and
`vocabulary_mismatch` says whether one model can draft for another (speculative decoding).
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
from collections.abc import Generator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO

_SCALARS: dict[int, str] = {
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d",
}
_STRING, _ARRAY = 8, 9

# llama.cpp's `general.file_type` (llama_ftype) to the names Ollama shows as quantization_level.
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4",
}


class GGUFError(ValueError):
    pass


@dataclass
class GGUFInfo:
    metadata: dict[str, Any] = field(default_factory=dict)
    parameter_count: int = 0
    version: int = 0

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) else None

    @property
    def context_length(self) -> int | None:
        value = self.metadata.get(f"{self.architecture}.context_length")
        return int(value) if isinstance(value, int) else None

    @property
    def embedding_length(self) -> int | None:
        value = self.metadata.get(f"{self.architecture}.embedding_length")
        return int(value) if isinstance(value, int) else None

    @property
    def quantization(self) -> str:
        file_type = self.metadata.get("general.file_type")
        return FILE_TYPES.get(file_type, "unknown") if isinstance(file_type, int) else "unknown"

    @property
    def parameter_size(self) -> str:
        count = self.parameter_count
        if count >= 1_000_000_000:
            return f"{count / 1e9:.1f}B"
        if count >= 1_000_000:
            return f"{count / 1e6:.2f}M"
        return str(count)


class _Reader:
    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle

    def read(self, n: int) -> bytes:
        data = self.handle.read(n)
        if len(data) != n:
            raise GGUFError("truncated GGUF file")
        return data

    def scalar(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        return self.raw_string().decode("utf-8", errors="replace")

    def raw_string(self) -> bytes:
        length = self.scalar("<Q")
        if length > 64 * 1024 * 1024:
            raise GGUFError("GGUF string too long")
        return self.read(length)

    def value(self, vtype: int, keep_arrays: bool) -> Any:
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            item_type = self.scalar("<I")
            count = self.scalar("<Q")
            if not keep_arrays and count > 64:
                self.skip_array(item_type, count)
                return None
            return [self.value(item_type, keep_arrays) for _ in range(count)]
        raise GGUFError(f"unknown GGUF value type {vtype}")

    def skip_array(self, item_type: int, count: int) -> None:
        if item_type in _SCALARS:
            self.handle.seek(struct.calcsize(_SCALARS[item_type]) * count, 1)
        elif item_type == _STRING:
            for _ in range(count):
                self.handle.seek(self.scalar("<Q"), 1)
        else:
            for _ in range(count):
                self.value(item_type, keep_arrays=False)


def _start(reader: _Reader, path: Path | str) -> tuple[int, int, int]:
    """Check the magic and version; returns (version, tensor count, key/value count)."""
    if reader.read(4) != b"GGUF":
        raise GGUFError(f"{path} is not a GGUF file")
    version = reader.scalar("<I")
    if version < 2:
        raise GGUFError(f"GGUF version {version} is not supported")
    return version, reader.scalar("<Q"), reader.scalar("<Q")


def read_gguf(path: Path | str, *, keep_arrays: bool = False) -> GGUFInfo:
    """Read the metadata and tensor shapes of a GGUF file (weights are not read)."""
    with open(path, "rb") as handle:
        reader = _Reader(handle)
        version, n_tensors, n_kv = _start(reader, path)
        info = GGUFInfo(version=version)
        for _ in range(n_kv):
            key = reader.string()
            info.metadata[key] = reader.value(reader.scalar("<I"), keep_arrays)
        total = 0
        for _ in range(n_tensors):
            reader.string()
            n_dims = reader.scalar("<I")
            count = 1
            for _ in range(n_dims):
                count *= reader.scalar("<Q")
            reader.scalar("<I")  # tensor type
            reader.scalar("<Q")  # data offset
            total += count
        info.parameter_count = total
        return info


def is_gguf(path: Path | str) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"GGUF"
    except OSError:
        return False


# Vocabulary ------------------------------------------------------------------------------------
_TOKENS = "tokenizer.ggml.tokens"
_VOCAB_KEYS = {
    "tokenizer.ggml.model": "model", "tokenizer.ggml.pre": "pre",
    "tokenizer.ggml.bos_token_id": "bos_id", "tokenizer.ggml.eos_token_id": "eos_id",
    "tokenizer.ggml.add_bos_token": "add_bos", "tokenizer.ggml.add_eos_token": "add_eos",
}
# The rules llama.cpp's own draft check applies (common/speculative.cpp): models of one family often pad
# the vocabulary to their embedding size, so counts may differ by up to 128 (Qwen2.5 0.5B has 151936
# tokens, 7B 152064), and the first few ids (special tokens renamed between sizes) are not compared.
MAX_VOCAB_SIZE_DIFFERENCE = 128
FIRST_COMPARED_TOKEN = 5


@dataclass(frozen=True)
class Vocabulary:
    """A GGUF's tokenizer, enough to tell whether two models tokenize text the same way."""

    model: str  # tokenizer.ggml.model: "gpt2" (BPE), "llama" (SentencePiece), ...
    size: int  # number of tokens
    tokens_sha256: str  # hex sha256 of every token's UTF-8 bytes, each followed by a NUL byte
    pre: str | None = None  # tokenizer.ggml.pre: the pre-tokenizer of a BPE vocabulary
    bos_id: int | None = None
    eos_id: int | None = None
    add_bos: bool | None = None
    add_eos: bool | None = None


def _open_tokens(reader: _Reader, path: Path | str, found: dict[str, Any]) -> Generator[bytes]:
    """Walk the header to the token array and yield its texts; the other tokenizer keys go into `found`
    (those after the array only once it has been read to its end)."""
    _version, _n_tensors, n_kv = _start(reader, path)
    seen = False
    for _ in range(n_kv):
        key = reader.string()
        vtype = reader.scalar("<I")
        if key != _TOKENS:
            value = reader.value(vtype, keep_arrays=False)
            if key in _VOCAB_KEYS:
                found[_VOCAB_KEYS[key]] = value
            continue
        item_type = reader.scalar("<I") if vtype == _ARRAY else None
        if item_type != _STRING:
            raise GGUFError(f"{_TOKENS} is not an array of strings")
        seen = True
        for _ in range(reader.scalar("<Q")):
            yield reader.raw_string()
    if not seen:
        raise GGUFError(f"the header has no tokenizer vocabulary ({_TOKENS})")


def read_vocabulary(path: Path | str) -> Vocabulary:
    """The tokenizer of a GGUF from its header alone; the token texts pass through a hash, never a list."""
    found: dict[str, Any] = {}
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=1 << 20) as handle:
        for text in _open_tokens(_Reader(handle), path, found):
            digest.update(text)
            digest.update(b"\0")
            size += 1
    model = found.get("model")
    return Vocabulary(
        model=model if isinstance(model, str) else "",
        size=size,
        tokens_sha256=digest.hexdigest(),
        pre=found.get("pre") if isinstance(found.get("pre"), str) else None,
        bos_id=_int(found.get("bos_id")),
        eos_id=_int(found.get("eos_id")),
        add_bos=found.get("add_bos") if isinstance(found.get("add_bos"), bool) else None,
        add_eos=found.get("add_eos") if isinstance(found.get("add_eos"), bool) else None,
    )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _vocabulary_or_reason(path: Path, whose: str) -> Vocabulary | str:
    try:
        return read_vocabulary(path)
    except OSError as exc:
        return f"{whose} file cannot be read ({exc.strerror or exc})"
    except (GGUFError, UnicodeDecodeError, struct.error) as exc:
        if not is_gguf(path):
            return f"{whose} file is not a GGUF model"
        return f"{whose} GGUF has no usable tokenizer: {exc}"


def _shown(text: bytes) -> str:
    return repr(text.decode("utf-8", errors="replace"))


def _first_difference(main: Path, draft: Path, stop: int) -> str | None:
    """Compare the token texts of both files in step, from FIRST_COMPARED_TOKEN up to `stop`."""
    with open(main, "rb", buffering=1 << 20) as main_handle, open(draft, "rb", buffering=1 << 20) as draft_handle, \
            contextlib.closing(_open_tokens(_Reader(main_handle), main, {})) as main_tokens, \
            contextlib.closing(_open_tokens(_Reader(draft_handle), draft, {})) as draft_tokens:
        pairs = islice(zip(main_tokens, draft_tokens, strict=False), FIRST_COMPARED_TOKEN, stop)
        for index, (ours, theirs) in enumerate(pairs, FIRST_COMPARED_TOKEN):
            if ours != theirs:
                return f"token {index} is {_shown(theirs)} in the draft's vocabulary, {_shown(ours)} in the model's"
    return None


def vocabulary_mismatch(main: Path, draft: Path) -> str | None:
    """None when `draft` can draft for `main` (speculative decoding), else a sentence saying what differs.

    The draft's tokens are verified by the main model id for id, so both must map text to the same ids:
    the same tokenizer type, the same special tokens, and the same token texts over their common ids
    (llama.cpp's rules, see MAX_VOCAB_SIZE_DIFFERENCE). An unreadable or non-GGUF file is a reason too.
    """
    ours = _vocabulary_or_reason(main, "the model's")
    if isinstance(ours, str):
        return ours
    theirs = _vocabulary_or_reason(draft, "the draft's")
    if isinstance(theirs, str):
        return theirs
    if ours.model != theirs.model or abs(ours.size - theirs.size) > MAX_VOCAB_SIZE_DIFFERENCE:
        return (f"the draft's tokenizer is {theirs.model or 'unnamed'} with {theirs.size} tokens, "
                f"the model's is {ours.model or 'unnamed'} with {ours.size}")
    for field_name, label in (("bos_id", "beginning-of-text token"), ("eos_id", "end-of-text token"),
                              ("add_bos", "add-BOS setting"), ("add_eos", "add-EOS setting")):
        mine, other = getattr(ours, field_name), getattr(theirs, field_name)
        if mine is not None and other is not None and mine != other:
            return f"the draft's {label} is {other}, the model's {mine}"
    if ours.size == theirs.size and ours.tokens_sha256 == theirs.tokens_sha256:
        return None
    return _first_difference(main, draft, min(ours.size, theirs.size))
