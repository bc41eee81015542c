"""Measure Ctrl-C → exit of a real `deskml serve` with a stream running (first press; second press).

    PYTHONPATH=$PWD python scripts/measure_ctrl_c.py 1          # one SIGINT
    PYTHONPATH=$PWD python scripts/measure_ctrl_c.py 2          # two, 0.5 s apart (time from the second)
    PYTHONPATH=$PWD python scripts/measure_ctrl_c.py 1 SIGTERM  # the SIGTERM grace, for comparison
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import MODEL, ServerProcess


def measure(presses: int, sig: signal.Signals) -> None:
    server = ServerProcess(Path(tempfile.mkdtemp()), env={"DESKML_PRELOAD": "true", "DESKML_CACHE": "false"})
    server.wait_ready(90)
    lines: list[dict[str, Any]] = []

    def read() -> None:
        body = {"model": MODEL, "prompt": "Write a long story.", "options": {"num_predict": 100000}}
        with httpx.stream("POST", server.url + "/api/generate", json=body, timeout=120) as response:
            lines.extend(json.loads(line) for line in response.iter_lines() if line.strip())

    reader = threading.Thread(target=read)
    reader.start()
    while server.log().count("/api/generate") == 0 and reader.is_alive() and not lines:
        time.sleep(0.05)
    time.sleep(1.0)  # the stream is generating
    started = time.monotonic()
    server.proc.send_signal(sig)
    if presses == 2:
        time.sleep(0.5)
        started = time.monotonic()
        server.proc.send_signal(signal.SIGINT)
    code = server.proc.wait(120)
    took = time.monotonic() - started
    reader.join(10)
    server.stop()
    print(f"{sig.name} x{presses}: exit {code} after {took:.2f} s; last line {lines[-1] if lines else None}; "
          f"traceback in log: {'Traceback' in server.log()}")


if __name__ == "__main__":
    measure(int(sys.argv[1]) if len(sys.argv) > 1 else 1,
            signal.Signals[sys.argv[2]] if len(sys.argv) > 2 else signal.SIGINT)
