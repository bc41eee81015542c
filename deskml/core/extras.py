"""The pip command that adds an optional extra, worded for how this deskml was installed.

`pip install 'deskml[embed]'` is right for a wheel from an index; in a git checkout (an editable
install, or the source tree on PYTHONPATH) it would fetch another deskml, so there the command is
`pip install -e '.[embed]'`, run in the checkout. Extras that pull in PyTorch get the CPU-wheel step
the README gives first: a bare `torch` resolves to the multi-GB CUDA build on Linux.
"""

from __future__ import annotations

import importlib.metadata
import json
from dataclasses import dataclass
from pathlib import Path

# The extras whose dependencies include torch (pyproject.toml; tests/test_model_kinds.py checks it).
TORCH_EXTRAS = frozenset({"embed", "vision", "image"})
CPU_TORCH = "pip install torch --index-url https://download.pytorch.org/whl/cpu"


@dataclass(frozen=True)
class Checkout:
    root: Path


def source_checkout() -> Checkout | None:
    """The source tree this deskml runs from, when it is one (editable install or PYTHONPATH)."""
    package = Path(__file__).resolve().parents[1]
    root = package.parent
    if (root / "pyproject.toml").is_file() and (root / "deskml" / "__init__.py").is_file():
        return Checkout(root)
    try:  # an editable install whose package directory is elsewhere (a .pth pointing at src/)
        raw = importlib.metadata.distribution("deskml").read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        return None
    try:
        info = json.loads(raw or "{}")
    except ValueError:
        return None
    if info.get("dir_info", {}).get("editable") and str(info.get("url", "")).startswith("file://"):
        return Checkout(Path(info["url"][len("file://"):]))
    return None


def install_command(extra: str) -> str:
    """The whole command that installs `extra` here, CPU PyTorch first when the extra needs it."""
    checkout = source_checkout()
    pip = f"pip install -e '.[{extra}]'" if checkout is not None else f"pip install 'deskml[{extra}]'"
    return f"{CPU_TORCH} && {pip}" if extra in TORCH_EXTRAS else pip


def where_to_run() -> str:
    """' (in /path/to/checkout)' when the command must run in the source tree, else ''."""
    checkout = source_checkout()
    return f" (in {checkout.root})" if checkout is not None else ""
