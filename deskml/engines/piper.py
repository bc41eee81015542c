"""Text-to-speech with Piper voices, run through the `piper` command in a separate process.

piper-tts is GPL-3.0-or-later, deskml is Apache-2.0: deskml never imports it. It starts
`python -m piper` as a long-lived child process that reads one line of text on stdin per utterance
and writes one WAV file per line into a private temp directory, logging `Wrote <path>` on stderr
when the file is complete; that log line is how deskml knows an utterance is finished. The voice
loads once per process. Piper fixes the speaking rate (`--length-scale`) per process, so a few
processes are kept, one per recently used speed.
"""

from __future__ import annotations

import collections
import contextlib
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from deskml.core.errors import BadRequest, EngineError, ModelLoadError, NotImplementedFeature
from deskml.engines.spec import ServiceSpec

log = logging.getLogger("deskml.engines.piper")

# Piper reads stdin as text lines (universal newlines): every line break would split an utterance.
_LINE_BREAKS = re.compile(r"[\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]+")
_WROTE = re.compile(r"Wrote (.+\.wav)\s*$")
_MAX_PROCESSES = 3
_STARTUP_TEXT = "Ready."


def utterances(text: str) -> list[str]:
    """The lines sent to Piper: one per paragraph, line breaks inside collapsed, empties dropped."""
    paragraphs = re.split(r"(?:\r?\n|\r)\s*(?:\r?\n|\r)", text)
    lines = [" ".join(_LINE_BREAKS.sub(" ", p).split()) for p in paragraphs]
    # A line with nothing to pronounce makes Piper write an empty WAV it cannot close, and exit.
    return [line for line in lines if any(ch.isalnum() for ch in line)]


class PiperProcess:
    """One `piper` child process at one speaking rate; one utterance at a time."""

    def __init__(self, model: Path, config: Path, length_scale: float) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="deskml-piper-"))
        self.length_scale = length_scale
        self.lock = threading.Lock()
        env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "piper", "--model", str(model), "--config", str(config),
             "--output-dir", str(self.workdir), "--length-scale", f"{length_scale:.4f}"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            cwd=self.workdir, env=env, text=True, encoding="utf-8", bufsize=1,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def speak(self, line: str) -> tuple[np.ndarray, int]:
        """Synthesize one line; returns int16 samples and their rate."""
        with self.lock:
            if not self.alive() or self.proc.stdin is None or self.proc.stderr is None:
                raise EngineError("the piper process has exited")
            try:
                self.proc.stdin.write(line + "\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError) as exc:
                raise EngineError(f"the piper process stopped reading: {exc}") from exc
            noise: collections.deque[str] = collections.deque(maxlen=20)
            while True:
                message = self.proc.stderr.readline()
                if not message:
                    raise EngineError("piper exited while speaking: " + " | ".join(noise))
                match = _WROTE.search(message)
                if match is None:
                    noise.append(message.strip())
                    continue
                path = Path(match.group(1))
                if path.parent.resolve() != self.workdir.resolve():
                    noise.append(message.strip())
                    continue
                try:
                    with wave.open(str(path), "rb") as handle:
                        rate = handle.getframerate()
                        frames = handle.readframes(handle.getnframes())
                finally:
                    path.unlink(missing_ok=True)
                return np.frombuffer(frames, dtype="<i2").astype(np.int16), rate

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


class PiperEngine:
    def __init__(self, spec: ServiceSpec) -> None:
        self.spec = spec
        self.model = Path(spec.options["model"])
        self.config = Path(spec.options["config"])
        self.sample_rate = 22050
        self._processes: collections.OrderedDict[float, PiperProcess] = collections.OrderedDict()
        self._lock = threading.Lock()

    def load(self) -> None:
        if importlib.util.find_spec("piper") is None:
            raise NotImplementedFeature(f"text-to-speech needs piper-tts; install it with: {self.spec.install_command}")
        if not self.model.is_file() or not self.config.is_file():
            raise ModelLoadError(f"the voice files for {self.spec.name} are missing")
        self.sample_rate = int(json.loads(self.config.read_text("utf-8"))["audio"]["sample_rate"])
        # Speak once so the voice is loaded now, not during the first request.
        self._process(1.0).speak(_STARTUP_TEXT)

    def _process(self, length_scale: float) -> PiperProcess:
        key = round(length_scale, 3)
        with self._lock:
            current = self._processes.get(key)
            if current is not None and current.alive():
                self._processes.move_to_end(key)
                return current
            if current is not None:
                current.close()
                del self._processes[key]
            while len(self._processes) >= _MAX_PROCESSES:
                _, oldest = self._processes.popitem(last=False)
                oldest.close()
            process = PiperProcess(self.model, self.config, key)
            self._processes[key] = process
            return process

    def speak(self, text: str, speed: float, cancel: threading.Event) -> Iterator[tuple[np.ndarray, int]]:
        lines = utterances(text)
        if not lines:
            raise BadRequest("the input has nothing to speak", param="input")
        process = self._process(1.0 / speed)
        for line in lines:
            if cancel.is_set():
                return
            yield process.speak(line)

    def close(self) -> None:
        with self._lock:
            while self._processes:
                _, process = self._processes.popitem()
                process.close()
