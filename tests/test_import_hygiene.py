"""The default install (`make serve`: no extras) must start: nothing on the server's start-up path may
import an optional extra's package at module level. Checked in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

OPTIONAL = ["numpy", "torch", "sklearn", "PIL", "celery", "transformers", "onnxruntime", "cv2",
            "faster_whisper", "diffusers", "av", "flask"]

SCRIPT = f"""
import sys
from deskml.app import create_app
import deskml.server, deskml.cli.main
create_app()
print(sorted(set({OPTIONAL!r}) & set(sys.modules)))
"""


def test_server_start_path_imports_no_optional_extra() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"imported at start-up: {out.stdout.strip()}"
