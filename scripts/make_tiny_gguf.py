"""Write a small llama-architecture GGUF with random weights, for GPU/CPU speed and equality checks.

No dependency but numpy: the GGUF v3 layout is written by hand. The vocabulary is SentencePiece-style
byte fallback (3 special tokens + 256 byte tokens), so any text tokenizes. Usage:
    python scripts/make_tiny_gguf.py OUT.gguf [--layers 12] [--embd 768] [--ff 2048] [--seed 0]
"""

from __future__ import annotations

import argparse
import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

ALIGN = 32
F32, F16 = 0, 1  # ggml tensor types
_U32, _I32, _F32, _BOOL, _STR, _ARR = 4, 5, 6, 7, 8, 9  # GGUF value types


def _string(out: BinaryIO, text: str) -> None:
    data = text.encode()
    out.write(struct.pack("<Q", len(data)) + data)


def _value(out: BinaryIO, value: Any) -> None:
    if isinstance(value, bool):
        out.write(struct.pack("<I?", _BOOL, value))
    elif isinstance(value, str):
        out.write(struct.pack("<I", _STR))
        _string(out, value)
    elif isinstance(value, float):
        out.write(struct.pack("<If", _F32, value))
    elif isinstance(value, tuple):  # (element type, items)
        kind, items = value
        out.write(struct.pack("<IIQ", _ARR, kind, len(items)))
        for item in items:
            if kind == _STR:
                _string(out, item)
            else:
                out.write(struct.pack({_F32: "<f", _I32: "<i", _U32: "<I"}[kind], item))
    else:
        out.write(struct.pack("<II", _U32, int(value)))


def build(path: Path, layers: int = 12, embd: int = 768, ff: int = 2048, heads: int = 12, kv_heads: int = 4,
          seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    vocab = len(tokens)
    head_dim = embd // heads
    meta: dict[str, Any] = {
        "general.architecture": "llama", "general.name": "deskml-gpu-check", "general.file_type": 1,
        "llama.context_length": 4096, "llama.embedding_length": embd, "llama.block_count": layers,
        "llama.feed_forward_length": ff, "llama.attention.head_count": heads,
        "llama.attention.head_count_kv": kv_heads, "llama.rope.dimension_count": head_dim,
        "llama.attention.layer_norm_rms_epsilon": 1e-5, "llama.vocab_size": vocab,
        "tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": (_STR, tokens),
        "tokenizer.ggml.scores": (_F32, [0.0] * vocab),
        "tokenizer.ggml.token_type": (_I32, [2, 3, 3] + [6] * 256),  # unknown, control x2, byte
        "tokenizer.ggml.unknown_token_id": 0, "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.add_bos_token": True,
    }
    scale = 0.02

    def weight(rows: int, cols: int) -> np.ndarray:  # numpy (rows, cols) = ggml ne [cols, rows]
        return (rng.standard_normal((rows, cols), dtype=np.float32) * scale).astype(np.float16)

    tensors: list[tuple[str, np.ndarray]] = [("token_embd.weight", weight(vocab, embd))]
    for i in range(layers):
        tensors += [
            (f"blk.{i}.attn_norm.weight", np.ones(embd, dtype=np.float32)),
            (f"blk.{i}.attn_q.weight", weight(embd, embd)),
            (f"blk.{i}.attn_k.weight", weight(kv_heads * head_dim, embd)),
            (f"blk.{i}.attn_v.weight", weight(kv_heads * head_dim, embd)),
            (f"blk.{i}.attn_output.weight", weight(embd, embd)),
            (f"blk.{i}.ffn_norm.weight", np.ones(embd, dtype=np.float32)),
            (f"blk.{i}.ffn_gate.weight", weight(ff, embd)),
            (f"blk.{i}.ffn_up.weight", weight(ff, embd)),
            (f"blk.{i}.ffn_down.weight", weight(embd, ff)),
        ]
    tensors += [("output_norm.weight", np.ones(embd, dtype=np.float32)), ("output.weight", weight(vocab, embd))]
    with path.open("wb") as out:
        out.write(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta)))
        for key, value in meta.items():
            _string(out, key)
            _value(out, value)
        offset = 0
        for name, array in tensors:
            _string(out, name)
            out.write(struct.pack("<I", array.ndim))
            for dim in reversed(array.shape):
                out.write(struct.pack("<Q", dim))
            out.write(struct.pack("<IQ", F16 if array.dtype == np.float16 else F32, offset))
            offset += (array.nbytes + ALIGN - 1) // ALIGN * ALIGN
        out.write(b"\0" * (-out.tell() % ALIGN))
        for _name, array in tensors:
            out.write(array.tobytes())
            out.write(b"\0" * (-array.nbytes % ALIGN))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--embd", type=int, default=768)
    parser.add_argument("--ff", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    path = build(args.out, layers=args.layers, embd=args.embd, ff=args.ff, seed=args.seed)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
