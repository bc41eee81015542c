"""Create a model from parts (Ollama's `/api/create` and `deskml create -f Modelfile`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deskml.core.errors import BadRequest, Forbidden, ModelNotFound, NotFound, NotImplementedFeature
from deskml.runtime import names
from deskml.runtime.gguf import is_gguf, vocabulary_mismatch
from deskml.runtime.hub.resolver import looks_like_path
from deskml.runtime.model_store import Manifest, ModelFile
from deskml.runtime.modelfile import coerce_parameter
from deskml.runtime.registry import ModelEntry, Registry


@dataclass
class CreateSpec:
    name: str
    from_: str | None = None
    files: dict[str, str] = field(default_factory=dict)  # file name -> blob digest
    system: str | None = None
    template: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    license: list[str] = field(default_factory=list)
    adapters: dict[str, str] = field(default_factory=dict)
    quantize: str | None = None
    # The model that drafts tokens for speculative decoding (DRAFT in a Modelfile). None keeps what the
    # FROM model has; "" or "none" removes it.
    draft: str | None = None

    @property
    def removes_draft(self) -> bool:
        return self.draft is not None and self.draft.strip().lower() in {"", "none"}


def create(registry: Registry, spec: CreateSpec, *, local_files: bool = True) -> tuple[ModelEntry, list[str]]:
    """Build and save the manifest; returns the entry and the progress statuses Ollama reports.

    `local_files=False` (a caller without the admin scope): FROM a file path is refused with one answer
    whether or not the file exists, before the disk is touched.
    """
    name = names.normalize(spec.name)
    if spec.quantize:
        raise NotImplementedFeature("quantize is not supported: create from an already quantized GGUF")
    if spec.adapters:
        raise NotImplementedFeature("LoRA adapters are not supported yet")
    statuses: list[str] = []
    base: Manifest | None = None
    files: list[ModelFile] = []
    if spec.files:
        gguf = [(fname, digest) for fname, digest in spec.files.items()]
        for fname, digest in gguf:
            if not registry.store.has_blob(digest):
                raise BadRequest(f"blob {digest} for {fname} was not uploaded; POST it to /api/blobs/{digest} first")
            path = registry.store.blob_path(digest)
            if not is_gguf(path):
                raise BadRequest(f"{fname} is not a GGUF file")
            files.append(ModelFile(role="model", name=fname, digest=digest, size=path.stat().st_size))
        statuses.append("parsing GGUF")
    elif spec.from_:
        source = spec.from_
        if not local_files and looks_like_path(source):
            raise Forbidden("creating a model from a file on the server's disk needs the admin scope; "
                            "upload it with POST /api/blobs/<digest> and pass 'files' instead")
        candidate = Path(source).expanduser()
        if local_files and ("/" in source or source.endswith(".gguf")) and candidate.is_file():
            if not is_gguf(candidate):
                raise BadRequest(f"{source} is not a GGUF file")
            statuses.append("copying file")
            files.append(registry.store.add_file(candidate))
            statuses.append("parsing GGUF")
        else:
            base = registry.get(source).manifest
            files = [f.model_copy() for f in base.files]
            statuses.append(f"using existing layers from {base.name}")
    else:
        raise BadRequest("either 'from' or 'files' is required")
    if spec.draft is not None:
        files = [f for f in files if f.role != "draft"]  # the given draft replaces an inherited one
        if not spec.removes_draft:
            files.append(_draft_file(registry, spec.draft.strip(), _model_path(registry, files), name))
            statuses.append(f"using draft model {files[-1].name}")
    parameters = dict(base.parameters) if base else {}
    for key, value in spec.parameters.items():
        parameters[key] = coerce_parameter(key, value)
    manifest = Manifest(
        name=name,
        files=files,
        system=spec.system if spec.system is not None else (base.system if base else None),
        template=spec.template if spec.template is not None else (base.template if base else None),
        parameters=parameters,
        messages=spec.messages or (list(base.messages) if base else []),
        license=spec.license or (list(base.license) if base else []),
        parent=base.name if base else None,
        source=base.source if base else None,
        modified_at=datetime.now(UTC),
    )
    if spec.template is not None:
        statuses.append("using template")
    if spec.system is not None:
        statuses.append("using system message")
    if spec.parameters:
        statuses.append("using parameters")
    statuses.append("writing manifest")
    return registry.save(manifest), statuses


def _model_path(registry: Registry, files: list[ModelFile]) -> Path:
    main = next((f for f in files if f.role == "model"), None)
    if main is None:
        raise BadRequest("a draft model needs a model with a GGUF weights file", param="draft")
    return Path(main.path) if main.path else registry.store.blob_path(main.digest or "")


def _draft_file(registry: Registry, draft: str, model_path: Path, model: str) -> ModelFile:
    """The draft's own weights file, as a "draft" file of the new model, once it can draft for it."""
    if looks_like_path(draft):
        raise BadRequest(f"draft '{draft}' is a file path: DRAFT names a model, so create one from the file first",
                         param="draft")
    try:
        entry = registry.get(draft)
    except ModelNotFound:
        raise NotFound(f"draft model '{draft}' not found", param="draft") from None
    manifest = entry.manifest
    if manifest.kind != "llm" or manifest.format not in (None, "gguf") or not is_gguf(entry.path):
        raise BadRequest(f"draft model '{entry.name}' is not a GGUF text model (kind {manifest.kind}, "
                         f"format {manifest.format or 'gguf'})", param="draft")
    reason = vocabulary_mismatch(model_path, entry.path)
    if reason is not None:
        raise BadRequest(f"draft model '{entry.name}' cannot draft for '{model}': {reason}", param="draft")
    return manifest.model_file().model_copy(update={"role": "draft", "name": entry.name})
