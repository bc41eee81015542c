"""Create a model from parts (Ollama's `/api/create` and `deskml create -f Modelfile`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deskml.core.errors import BadRequest, Forbidden, NotImplementedFeature
from deskml.runtime import names
from deskml.runtime.gguf import is_gguf
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
