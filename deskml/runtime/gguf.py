"""A small GGUF header reader: metadata key/values and the parameter count.

Used for `/api/show` (`model_info`, `details`) and to read the model's own chat template
without loading the weights. Large arrays (the tokenizer vocabulary) are skipped unless asked for.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
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
        length = self.scalar("<Q")
        if length > 64 * 1024 * 1024:
            raise GGUFError("GGUF string too long")
        return self.read(length).decode("utf-8", errors="replace")

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


def read_gguf(path: Path | str, *, keep_arrays: bool = False) -> GGUFInfo:
    """Read the metadata and tensor shapes of a GGUF file (weights are not read)."""
    with open(path, "rb") as handle:
        reader = _Reader(handle)
        if reader.read(4) != b"GGUF":
            raise GGUFError(f"{path} is not a GGUF file")
        info = GGUFInfo(version=reader.scalar("<I"))
        if info.version < 2:
            raise GGUFError(f"GGUF version {info.version} is not supported")
        n_tensors = reader.scalar("<Q")
        n_kv = reader.scalar("<Q")
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
