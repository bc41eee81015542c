"""/metrics parsed with the Prometheus text parser and checked against the requests made; the
JSON access log (one line per request, request id, no content, no secrets); X-Request-Id."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from deskml.app import create_app
from deskml.services.logging import _redact, configure_logging
from tests.conftest import MODEL, make_settings


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def _value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for got, v in samples.get(name, []) if all(got.get(k) == val for k, val in labels.items()))


@pytest.mark.slow  # the real model
def test_metrics_match_the_requests_made(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, auth="off", rate_limit_requests_per_hour=9)
    with TestClient(create_app(settings)) as client:
        body = {"model": MODEL, "prompt": "Name a fruit.", "stream": False,
                "options": {"temperature": 0, "num_predict": 6}}
        fresh = client.post("/api/generate", json=body).json()
        assert client.post("/api/generate", json=body).headers["x-deskml-cache"] == "hit"
        streamed = client.post("/api/generate", json={**body, "stream": True, "options": {"num_predict": 5}})
        last = json.loads(streamed.text.splitlines()[-1])
        for _ in range(3):
            client.get("/api/tags")
        client.get("/api/nope")
        statuses = [client.get("/api/tags").status_code for _ in range(4)]
        assert statuses.count(429) == 2  # 9 per hour: requests 10 and 11 are refused
        scrape = client.get("/metrics")
        assert scrape.headers["content-type"].startswith("text/plain")
        samples = _samples(scrape.text)

    model = "smollm2:135m"
    assert _value(samples, "deskml_requests_total", route="/api/generate", status="200", model=model) == 3
    assert _value(samples, "deskml_requests_total", route="/api/tags", status="200", dialect="ollama") == 5
    assert _value(samples, "deskml_requests_total", route="/api/tags", status="429") == 2
    assert _value(samples, "deskml_requests_total", route="unmatched", status="404") == 1
    assert _value(samples, "deskml_rate_limited_total", limit="requests_per_hour") == 2
    assert _value(samples, "deskml_cache_requests_total", result="hit") == 1
    assert _value(samples, "deskml_cache_requests_total", result="miss") == 1
    # tokens generated: the two fresh replies (the cache hit generated nothing)
    generated = fresh["eval_count"] + last["eval_count"]
    assert _value(samples, "deskml_tokens_total", model=model, kind="completion") == generated
    assert _value(samples, "deskml_tokens_total", model=model, kind="prompt") >= fresh["prompt_eval_count"]
    assert _value(samples, "deskml_time_to_first_token_seconds_count", model=model) == 2
    assert _value(samples, "deskml_time_per_output_token_seconds_count", model=model) == 2
    assert _value(samples, "deskml_request_duration_seconds_count", route="/api/generate") == 3
    assert _value(samples, "deskml_models_loaded") == 1
    assert _value(samples, "deskml_model_memory_bytes", model=model, kind="llm") > 50e6
    assert _value(samples, "deskml_slots", model=model) == 2
    assert _value(samples, "deskml_running_requests", model=model) == 0
    assert _value(samples, "deskml_queued_requests", model=model) == 0
    assert "deskml_history_dropped_total" in samples  # the history writer's drop counter
    assert _value(samples, "deskml_requests_in_flight") == 1  # the scrape itself


def test_two_apps_in_one_process_have_separate_registries(tmp_path: Path) -> None:
    one = create_app(make_settings(tmp_path / "1", auth="off"))
    two = create_app(make_settings(tmp_path / "2", auth="off"))
    with TestClient(one) as a, TestClient(two) as b:
        for _ in range(3):
            a.get("/api/tags")
        b.get("/api/tags")
        assert _value(_samples(a.get("/metrics").text), "deskml_requests_total", route="/api/tags") == 3
        assert _value(_samples(b.get("/metrics").text), "deskml_requests_total", route="/api/tags") == 1


def test_metrics_switch_and_admin_scope(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path / "off", auth="off", metrics=False))) as client:
        assert client.get("/metrics").status_code == 404
    with TestClient(create_app(make_settings(tmp_path / "auth", auth="off", metrics_auth=True))) as client:
        r = client.get("/metrics")  # no auth middleware at all: nobody can prove the admin scope
        assert r.status_code == 401 and "admin scope" in r.json()["error"]


@pytest.fixture
def captured_log() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    buffer = io.StringIO()
    yield buffer
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in saved:
        root.addHandler(handler)
    root.setLevel(level)


@pytest.mark.slow  # the real model
def test_json_access_log_has_request_id_and_no_content_or_secrets(tmp_path: Path, captured_log: io.StringIO) -> None:
    settings = make_settings(tmp_path, auth="off", log_format="json", log_file=tmp_path / "logs" / "deskml.log")
    configure_logging(settings, stream=captured_log)
    with TestClient(create_app(settings)) as client:
        r = client.post("/api/generate", headers={"Authorization": "Bearer sk-topsecret-123", "X-Request-Id": "abc-1"},
                        json={"model": MODEL, "prompt": "purple elephant 42", "stream": False,
                              "options": {"num_predict": 3}})
        assert r.status_code == 200 and r.headers["x-request-id"] == "abc-1"
        reply = r.json()["response"]
        bad = client.get("/api/tags", headers={"X-Request-Id": "no spaces allowed!"})
        assert bad.headers["x-request-id"] != "no spaces allowed!" and len(bad.headers["x-request-id"]) == 32
        logging.getLogger("deskml.test").info("client sent Authorization: Bearer sk-topsecret-123 here")
    text = captured_log.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    access = [line for line in lines if line["logger"] == "deskml.access"]
    first = next(line for line in access if line["request_id"] == "abc-1")
    assert first["method"] == "POST" and first["path"] == "/api/generate" and first["status"] == 200
    assert first["model"] == "smollm2:135m" and first["completion_tokens"] >= 1 and first["duration_ms"] > 0
    assert first["route"] == "/api/generate" and first["dialect"] == "ollama"
    assert any(line["request_id"] == bad.headers["x-request-id"] for line in access)
    assert "sk-topsecret-123" not in text and "purple elephant" not in text
    assert reply.strip() == "" or reply not in text
    assert any("[redacted]" in line["message"] for line in lines)
    file_text = (tmp_path / "logs" / "deskml.log").read_text()
    assert '"request_id": "abc-1"' in file_text and "sk-topsecret-123" not in file_text


def test_log_file_rotates(tmp_path: Path, captured_log: io.StringIO) -> None:
    path = tmp_path / "deskml.log"
    configure_logging(make_settings(tmp_path, log_file=path, log_file_max_mb=0.001, log_file_backups=2),
                      stream=captured_log)
    for i in range(100):
        logging.getLogger("deskml.test").info("line %d of the rotation test", i)
    assert path.exists() and (tmp_path / "deskml.log.1").exists() and (tmp_path / "deskml.log.2").exists()
    assert not (tmp_path / "deskml.log.3").exists()
    assert path.stat().st_size <= 1100


def test_text_format_on_a_terminal(tmp_path: Path, captured_log: io.StringIO) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    configure_logging(make_settings(tmp_path), stream=tty)
    logging.getLogger("deskml.test").warning("hello")
    assert tty.getvalue().rstrip().endswith("WARNING deskml.test: hello")
    configure_logging(make_settings(tmp_path, log_format="json"), stream=tty)
    logging.getLogger("deskml.test").warning("again")
    assert json.loads(tty.getvalue().splitlines()[-1])["message"] == "again"


def test_redaction() -> None:
    assert _redact("Authorization: Bearer abc.def") == "Authorization: [redacted]"
    assert _redact("x-api-key: dk_123, next") == "x-api-key: [redacted], next"
    assert _redact("url?api_key=zzz&x=1") == "url?api_key=[redacted]&x=1"
    assert _redact("nothing secret here") == "nothing secret here"
