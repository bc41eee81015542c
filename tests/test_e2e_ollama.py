"""End to end: a deskml server as a subprocess, driven by the official `ollama` client, by raw
requests exactly as the seed's Dart `OllamaService` sends them, and by the `deskml` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import ollama
import pytest

from tests.conftest import MODEL, ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> ollama.Client:
    return ollama.Client(host=server.url)


def test_ollama_client_chat_and_generate(client: ollama.Client) -> None:
    reply = client.chat(model="smollm2", messages=[{"role": "user", "content": "Say hello."}],
                        options={"temperature": 0, "num_predict": 20})
    assert reply.message.role == "assistant" and reply.message.content.strip()
    assert reply.done and reply.eval_count and reply.eval_count <= 20
    gen = client.generate(model="smollm2", prompt="Two plus two is", options={"temperature": 0, "num_predict": 8})
    assert gen.response.strip() and gen.done_reason in {"stop", "length"}
    scored = client.chat(model="smollm2", messages=[{"role": "user", "content": "Say hello."}], logprobs=True,
                         top_logprobs=2, options={"temperature": 0, "num_predict": 6})
    assert scored.logprobs and "".join(lp.token for lp in scored.logprobs) == scored.message.content
    assert all(lp.logprob <= 0 and len(lp.top_logprobs or []) == 2 for lp in scored.logprobs)


def test_ollama_client_streaming(client: ollama.Client) -> None:
    parts = list(client.chat(model="smollm2", messages=[{"role": "user", "content": "Count to five."}],
                             stream=True, options={"temperature": 0, "num_predict": 30}))
    assert len(parts) > 3 and parts[-1].done
    assert "".join(p.message.content or "" for p in parts).strip()
    gen_parts = list(client.generate(model="smollm2", prompt="Hello", stream=True, options={"num_predict": 10}))
    # at temperature 0.8 the model may end before the limit; it never goes past it
    assert gen_parts[-1].done and 0 < (gen_parts[-1].eval_count or 0) <= 10


def test_ollama_client_list_show_ps(client: ollama.Client) -> None:
    names = [m.model for m in client.list().models]
    assert MODEL in names
    shown = client.show("smollm2")
    assert shown.modelinfo and shown.modelinfo["general.architecture"] == "llama"
    assert shown.details and shown.details.quantization_level == "Q4_1"
    client.generate(model="smollm2", prompt="", keep_alive="2m")
    running = client.ps().models
    assert any(m.model == MODEL and m.expires_at is not None for m in running)


def test_ollama_client_create_copy_delete(client: ollama.Client) -> None:
    status = client.create(model="helper", from_="smollm2", system="You answer in one word.",
                           parameters={"temperature": 0.0, "num_predict": 8})
    assert status.status == "success"
    assert "You answer in one word." in (client.show("helper").modelfile or "")
    client.copy("helper", "helper-copy")
    assert {"helper:latest", "helper-copy:latest"} <= {m.model for m in client.list().models}
    client.delete("helper-copy")
    with pytest.raises(ollama.ResponseError) as err:
        client.show("helper-copy")
    assert err.value.status_code == 404
    client.delete("helper")


def test_ollama_client_embed(client: ollama.Client) -> None:
    out = client.embed(model="smollm2", input=["first text", "second text"])
    assert len(out.embeddings) == 2 and len(out.embeddings[0]) == 576
    legacy = client.embeddings(model="smollm2", prompt="first text")
    assert len(legacy.embedding) == 576


def test_ollama_client_errors(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 404 and "not found" in err.value.error


def test_seed_dart_ollama_service_requests(server: ServerProcess) -> None:
    """The four calls of the seed's OllamaService (§3.1), byte for byte what Dio sends."""
    headers = {"content-type": "application/json; charset=utf-8"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as dio:
        # isAvailable() / listModels(): GET /api/tags, reads models[].name
        names = [m["name"] for m in dio.get("/api/tags").json()["models"]]
        assert MODEL in names
        # generate(stream: false): reads response.data['response']
        r = dio.post("/api/generate", content=json.dumps({"model": "smollm2", "prompt": "Привет! Расскажи про Python",
                                                           "stream": False}))
        assert r.headers["content-type"].startswith("application/json")
        assert isinstance(r.json()["response"], str) and r.json()["response"]
        # generateStream(): splits each network chunk on \n and reads json['response']
        pieces = []
        with dio.stream("POST", "/api/generate", content=json.dumps({"model": "smollm2", "prompt": "Напиши стих",
                                                                       "stream": True})) as s:
            for chunk in s.iter_bytes():
                for line in chunk.decode("utf-8").split("\n"):
                    if line.strip():
                        obj = json.loads(line)
                        if obj.get("response") is not None:
                            pieces.append(obj["response"])
        assert "".join(pieces).strip()
        # chat(): no "stream" field, so (as with Ollama) the reply is NDJSON; every line carries
        # message.content, and the last one is done.
        r = dio.post("/api/chat", content=json.dumps({"model": "smollm2", "messages": [
            {"role": "user", "content": "Привет! Меня зовут Иван"},
            {"role": "assistant", "content": "Здравствуй, Иван!"},
            {"role": "user", "content": "Как меня зовут?"}]}))
        lines = [json.loads(line) for line in r.text.splitlines() if line.strip()]
        assert all("content" in line["message"] for line in lines) and lines[-1]["done"]


def test_seed_chat_without_stream_gets_one_object_when_configured(tmp_path: Path) -> None:
    """DESKML_OLLAMA_STREAM_DEFAULT=false makes the seed's chat() (which omits stream) work as written."""
    proc = ServerProcess(tmp_path, env={"DESKML_OLLAMA_STREAM_DEFAULT": "false"})
    try:
        proc.wait_ready()
        r = httpx.post(proc.url + "/api/chat", json={"model": "smollm2", "messages": [
            {"role": "user", "content": "Hi"}], "options": {"num_predict": 5}}, timeout=60)
        assert r.json()["message"]["content"] is not None and r.json()["done"] is True
    finally:
        proc.stop()


def _cli(server: ServerProcess, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DESKML_URL": server.url}
    return subprocess.run([sys.executable, "-m", "deskml.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=120, input=stdin)


def test_cli_against_server(server: ServerProcess, tmp_path: Path, smollm2_gguf: Path) -> None:
    listed = _cli(server, "list")
    assert listed.returncode == 0 and MODEL in listed.stdout
    one_shot = _cli(server, "run", "smollm2", "Say", "hi")
    assert one_shot.returncode == 0 and one_shot.stdout.strip()
    chat = _cli(server, "run", "smollm2", stdin="")  # piped empty stdin: interactive loop ends at EOF
    assert chat.returncode == 0
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {smollm2_gguf}\nPARAMETER temperature 0.3\nSYSTEM Ты помощник.\n", "utf-8")
    created = _cli(server, "create", "local-copy", "-f", str(modelfile))
    assert created.returncode == 0, created.stderr
    assert "success" in created.stdout
    shown = _cli(server, "show", "local-copy", "--system")
    assert "Ты помощник." in shown.stdout
    assert _cli(server, "cp", "local-copy", "local-copy2").returncode == 0
    assert _cli(server, "rm", "local-copy", "local-copy2").returncode == 0
    ps = _cli(server, "ps")
    assert ps.returncode == 0 and "NAME" in ps.stdout
    missing = _cli(server, "show", "ghost")
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_cli_without_server_says_so(tmp_path: Path) -> None:
    env = {**os.environ, "DESKML_URL": "http://127.0.0.1:9"}
    out = subprocess.run([sys.executable, "-m", "deskml.cli.main", "list"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1 and "deskml serve" in out.stderr
    version = subprocess.run([sys.executable, "-m", "deskml.cli.main", "--version"], capture_output=True,
                             text=True, timeout=60)
    assert version.returncode == 0 and "deskml version" in version.stdout


def test_port_in_use_is_one_line(server: ServerProcess, tmp_path: Path) -> None:
    env = {**os.environ, "DESKML_DATA_DIR": str(tmp_path), "DESKML_PORT": str(server.port)}
    out = subprocess.run([sys.executable, "-m", "deskml.cli.main", "serve"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1
    assert "already in use" in out.stderr and "--port" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def _running(server: ServerProcess) -> int:
    models = httpx.get(server.url + "/api/ps", timeout=10).json()["models"]
    return sum(m["running"] + m["queued"] for m in models)


def test_disconnect_mid_stream_frees_the_slot(server: ServerProcess) -> None:
    import time

    # counting goes on and on at temperature 0, so the reply cannot end on its own
    body = {"model": "smollm2", "prompt": "1, 2, 3, 4, 5, 6,", "raw": True,
            "options": {"num_predict": 2000, "temperature": 0, "repeat_penalty": 1.0}}
    with httpx.Client(timeout=60) as http, http.stream("POST", server.url + "/api/generate", json=body) as r:
        lines = r.iter_lines()  # held, not abandoned: dropping it would close the connection
        for _ in range(6):
            next(lines)
        assert _running(server) == 1
        r.close()
        closed = time.monotonic()
    while _running(server) and time.monotonic() - closed < 5:
        time.sleep(0.01)
    freed_after = time.monotonic() - closed
    assert _running(server) == 0
    assert freed_after < 1.0, f"slot still busy {freed_after:.2f}s after the client left"


def test_disconnect_while_waiting_non_stream(server: ServerProcess) -> None:
    import time

    body = {"model": "smollm2", "prompt": "1, 2, 3, 4, 5, 6,", "raw": True, "stream": False,
            "options": {"num_predict": 2000, "temperature": 0, "repeat_penalty": 1.0}}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + "/api/generate", json=body, timeout=1.0)
    deadline = time.monotonic() + 5
    while _running(server) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _running(server) == 0


def test_streaming_client_that_leaves_the_queue_is_dropped(server: ServerProcess) -> None:
    """Both slots busy: a third streaming request waits in the queue with no response yet; when its
    client gives up, it leaves the queue at once instead of taking a slot later."""
    import time

    def queued() -> int:
        return sum(m["queued"] for m in httpx.get(server.url + "/api/ps", timeout=10).json()["models"])

    def body(start: int) -> dict:  # different prompts: identical requests would share one generation (cache)
        return {"model": "smollm2", "prompt": ", ".join(str(start + i) for i in range(6)) + ",", "raw": True,
                "options": {"num_predict": 2000, "temperature": 0, "repeat_penalty": 1.0}}

    url = server.url + "/api/generate"
    with httpx.Client(timeout=60) as http, http.stream("POST", url, json=body(1)) as a, \
            http.stream("POST", url, json=body(100)) as b:
        held = [a.iter_lines(), b.iter_lines()]  # kept: a dropped iterator closes its connection
        assert all(next(lines) for lines in held)  # both running now
        assert _running(server) == 2
        with pytest.raises(httpx.ReadTimeout):  # queued: no status line until a slot frees
            httpx.post(url, json=body(500), timeout=httpx.Timeout(60, read=1.5))
        left = time.monotonic()
        while queued() and time.monotonic() - left < 5:
            time.sleep(0.02)
        assert queued() == 0, "the abandoned request is still queued"
        assert _running(server) == 2  # the two streams still run
