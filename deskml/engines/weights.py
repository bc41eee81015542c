"""Finding model files inside installed PyPI packages without importing them.

Weight-carrying packages are model sources: importing one may pull in code we do not want (or
fail), so only its folder is located.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def package_dir(module: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def package_file(module: str, relative: str) -> Path | None:
    base = package_dir(module)
    path = base / relative if base is not None else None
    return path if path is not None and path.is_file() else None
