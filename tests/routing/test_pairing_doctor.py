"""Pairing (the QR code decodes back to the payload), the admin pairing endpoint, and the doctor's
port-taken and loopback-bind findings."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import zxingcpp
from fastapi.testclient import TestClient
from PIL import Image

from deskml.app import create_app
from deskml.services import pairing
from deskml.services.tls import make_selfsigned
from tests.conftest import free_port, make_settings

pytestmark = pytest.mark.slow  # runs the deskml CLI as a subprocess


def decode_png(data: bytes) -> str:
    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(data)).convert("L"))
    assert len(results) == 1, "exactly one QR code expected"
    assert results[0].format == zxingcpp.BarcodeFormat.QRCode
    return str(results[0].text)


def test_qr_code_decodes_back_to_the_payload(tmp_path: Path) -> None:
    certs = make_selfsigned(tmp_path / "tls")
    settings = make_settings(tmp_path, host="0.0.0.0", port=11500, tls_cert=certs.cert, tls_key=certs.key)
    payload = pairing.build_payload(settings, "dk_abcd1234_" + "s" * 43, ["https://desk.example:11500"])
    assert payload.tls is not None and payload.tls.sha256 == certs.fingerprint
    assert payload.urls[0] == "https://desk.example:11500"
    assert all(u.startswith("https://") and u.endswith(":11500") for u in payload.urls)
    decoded = json.loads(decode_png(pairing.qr_png(payload)))
    assert decoded == payload.model_dump()
    assert decoded["type"] == "deskml-pair" and decoded["v"] == 1 and decoded["api"]["openai"] == "/v1"
    terminal = pairing.qr_terminal(payload)
    assert len(terminal.splitlines()) > 20 and set(terminal) <= {"█", "▀", "▄", " ", "\n"}


def test_pair_cli_creates_a_scoped_key_that_works(tmp_path: Path) -> None:
    env = {**os.environ, "DESKML_DATA_DIR": str(tmp_path), "DESKML_HOST": "0.0.0.0"}
    svg = tmp_path / "pair.svg"
    done = subprocess.run([sys.executable, "-m", "deskml.cli.main", "pair", "--name", "pixel", "--json",
                           "--png", str(tmp_path / "pair.png"), "--svg", str(svg)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["key"].startswith("dk_") and payload["tls"] is None
    assert json.loads(decode_png((tmp_path / "pair.png").read_bytes())) == payload
    assert svg.read_text().lstrip().startswith("<svg")
    settings = make_settings(tmp_path, auth="required")
    with TestClient(create_app(settings)) as client:
        keys = client.get("/api/keys", headers={"Authorization": f"Bearer {payload['key']}"})
        assert keys.status_code == 403  # the phone's key has the inference scope only
        tags = client.get("/api/tags", headers={"Authorization": f"Bearer {payload['key']}"})
        assert tags.status_code == 200


def test_admin_pair_endpoint_returns_payload_svg_and_png(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, host="127.0.0.1")
    with TestClient(create_app(settings)) as client:
        reply = client.post("/api/admin/pair", json={"name": "tablet", "urls": ["http://10.1.2.3:11434"]})
        assert reply.status_code == 201, reply.text
        body = reply.json()
        assert body["payload"]["key"].startswith("dk_") and body["payload"]["urls"] == ["http://10.1.2.3:11434"]
        assert body["svg"].lstrip().startswith("<svg")
        import base64

        png = base64.b64decode(body["png"].split(",", 1)[1])
        assert decode_png(png) == body["text"] and json.loads(body["text"]) == body["payload"]
        listed = {k["name"]: k["scopes"] for k in client.get("/api/keys").json()["keys"]}
        assert listed["tablet"] == ["inference"]
        doctor = client.get("/api/doctor").json()
        assert doctor["ok"] is False and doctor["checks"][0]["name"] == "bind"
        # the doctor and pairing routes need the admin scope
        key = client.post("/api/keys", json={"name": "app", "scopes": ["inference"]}).json()["key"]
    with TestClient(create_app(make_settings(tmp_path, auth="required"))) as client:
        headers = {"Authorization": f"Bearer {key}"}
        assert client.get("/api/doctor", headers=headers).status_code == 403
        assert client.post("/api/admin/pair", json={"name": "x"}, headers=headers).status_code == 403


def _doctor(tmp_path: Path, *args: str) -> tuple[int, dict[str, dict[str, str]]]:
    env = {**os.environ, "DESKML_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "deskml.cli.main", "doctor", "--json", *args], env=env,
                          capture_output=True, text=True, timeout=60)
    report = json.loads(done.stdout)
    return done.returncode, {c["name"]: c for c in report["checks"]}


def test_doctor_finds_a_taken_port_and_who_holds_it(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, checks = _doctor(tmp_path, "--host", "0.0.0.0", "--port", str(port))
    assert code == 1
    assert checks["port"]["status"] == "fail" and f"port {port} is taken" in checks["port"]["message"]
    assert f"pid {os.getpid()}" in checks["port"]["message"]  # this test process holds it
    assert f"--port {port + 1}" in checks["port"]["fix"]


def test_doctor_loopback_bind_blocks_a_phone(tmp_path: Path) -> None:
    code, checks = _doctor(tmp_path, "--host", "127.0.0.1", "--port", str(free_port()))
    assert code == 1
    assert checks["bind"]["status"] == "fail" and "--host 0.0.0.0" in checks["bind"]["fix"]
    assert checks["models"]["status"] == "ok" and "smollm2:135m" in checks["models"]["message"]


def test_doctor_lan_bind_without_key_and_certificate_names(tmp_path: Path) -> None:
    certs = make_selfsigned(tmp_path / "tls", days=30)
    code, checks = _doctor(tmp_path, "--host", "0.0.0.0", "--port", str(free_port()))
    assert checks["bind"]["status"] == "ok"
    assert checks["auth"]["status"] == "fail" and checks["auth"]["fix"] == "deskml pair --name phone"
    assert code == 1
    env = {**os.environ, "DESKML_DATA_DIR": str(tmp_path), "DESKML_TLS_CERT": str(certs.cert),
           "DESKML_TLS_KEY": str(certs.key), "DESKML_INSECURE": "true"}
    done = subprocess.run([sys.executable, "-m", "deskml.cli.main", "doctor", "--json", "--host", "0.0.0.0",
                           "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=60)
    tls = {c["name"]: c for c in json.loads(done.stdout)["checks"]}["tls"]
    assert tls["status"] == "ok" and "covers the LAN addresses" in tls["message"]


@pytest.mark.parametrize("names", [["203.0.113.9"]])
def test_doctor_certificate_missing_a_lan_address(tmp_path: Path, names: list[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from deskml.runtime import doctor

    certs = make_selfsigned(tmp_path / "tls")
    monkeypatch.setattr(doctor, "lan_addresses", lambda: names)
    check = doctor.check_tls(make_settings(tmp_path, host="0.0.0.0", tls_cert=certs.cert, tls_key=certs.key))
    assert check.status == "fail" and "203.0.113.9" in check.message
    assert check.fix == "deskml tls selfsigned --force --name 203.0.113.9"
