"""A running job's heartbeat, kept by a small process beside its runner.

The runner's own heartbeat (runner._watch) runs on the runner's event loop, so it stops whenever the
process holds the GIL in one long C call: llama.cpp's model load holds it for the whole load (40 s
measured for the bundled 135M model on a loaded 2-core machine). A live runner then looks dead: the
Celery executor re-sends its job, another worker takes it over, and when that worker's first load
stalls in turn the job has spent its attempts and fails although no process died.

So each run also starts `python -m deskml.runtime.jobs.lease`, which refreshes the job's heartbeat
every period while its runner lives. The runner writes a byte to the keeper's stdin at each of its
own heartbeats. It also holds a cancelled job while its runner winds down (the runner's heartbeat stops
at the cancel), so that the executor's scan does not close the job before the runner has saved the
lines it finished. The keeper stops when stdin closes (the runner finished, or died: its job then goes
stale exactly as before), when the job is no longer the runner's, or after the runner has been silent
for FROZEN_LIMIT_S (a runner truly stuck is still taken over, only later).
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
import threading
import time

log = logging.getLogger("deskml.jobs")

# Longer than any model load that holds the GIL; a runner silent this long is left to go stale.
FROZEN_LIMIT_S = 600.0


class LeaseKeeper:
    """The runner's side: start the keeper, ping it at each heartbeat, close it when the run ends."""

    def __init__(self, database_url: str, job_id: str, worker: str, period: float) -> None:
        self._config = {"url": database_url, "job": job_id, "worker": worker, "period": period}
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        try:
            self._proc = subprocess.Popen([sys.executable, "-m", "deskml.runtime.jobs.lease"], stdin=subprocess.PIPE,
                                          stdout=subprocess.DEVNULL)
        except OSError as exc:  # the in-process heartbeat still runs; only a frozen runner is exposed
            log.warning("job %s: could not start its heartbeat keeper: %s", self._config["job"], exc)
            return
        # The URL goes through stdin, not argv: it may hold a password that `ps` would show.
        self._send(json.dumps(self._config).encode() + b"\n")

    @property
    def stopped(self) -> bool:
        return self._proc is None or self._proc.poll() is not None

    def ping(self) -> None:
        self._send(b".")

    def _send(self, data: bytes) -> None:
        if self._proc is None or self._proc.stdin is None:
            return
        try:
            self._proc.stdin.write(data)
            self._proc.stdin.flush()
        except OSError:  # the keeper has stopped (the job is no longer ours): nothing to tell it
            pass

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _keep() -> None:
    """The keeper's side: heartbeat every period while the runner is alive and has been heard from."""
    from deskml.runtime.jobs.store import JobStore
    from deskml.services.db import Database

    config = json.loads(sys.stdin.buffer.readline())
    period = float(config["period"])
    store = JobStore(Database(config["url"]), period)
    heard = [time.monotonic()]
    closed = threading.Event()

    def listen() -> None:
        while sys.stdin.buffer.read(1):
            heard[0] = time.monotonic()
        closed.set()

    threading.Thread(target=listen, daemon=True).start()
    while not closed.wait(period):
        if time.monotonic() - heard[0] > FROZEN_LIMIT_S:
            continue
        try:
            if not store.keep(config["job"], config["worker"]):
                return  # taken over, or cancelled and closed: the runner learns it from its own heartbeat
        except Exception as exc:  # the database briefly away: the lease lasts several periods
            log.warning("job %s: heartbeat keeper: %s", config["job"], exc)
    store.db.engine.dispose()


if __name__ == "__main__":
    _keep()
