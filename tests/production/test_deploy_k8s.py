"""deploy/kubernetes/ against the Kubernetes schemas (kubernetes-validate, offline), strictly (no unknown
fields), plus what docs/scale.md promises of them: probes on /api/version, a volume for the data dir,
and an HPA on deskml's queue gauge as the Prometheus adapter serves it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (dev extra)")

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
VERSION = "1.30"


def documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text("utf-8")) if d)
    return docs


def by_kind(kind: str) -> dict[str, Any]:
    return next(d for d in documents() if d["kind"] == kind)


@pytest.mark.parametrize("doc", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_manifest_is_valid_against_the_kubernetes_schema(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, VERSION, strict=True)  # raises ValidationError naming the field


def test_the_validator_does_reject_a_broken_manifest() -> None:
    broken = by_kind("Deployment")
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSION, strict=True)


def test_probes_volume_and_autoscaling_are_what_the_docs_say() -> None:
    pod = by_kind("Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/api/version"
    env = {e["name"]: e.get("value") for e in container["env"]}
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == env["DESKML_DATA_DIR"])
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["persistentVolumeClaim"]["claimName"] == by_kind("PersistentVolumeClaim")["metadata"]["name"]
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    service = by_kind("Service")
    assert service["spec"]["selector"] == by_kind("Deployment")["spec"]["selector"]["matchLabels"]
    hpa = by_kind("HorizontalPodAutoscaler")
    metric = hpa["spec"]["metrics"][0]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == "deskml_queued_requests"
    adapter = yaml.safe_load(by_kind("ConfigMap")["data"]["config.yaml"])
    assert adapter["rules"][0]["name"]["as"] == "deskml_queued_requests"


def test_the_autoscaled_metric_is_one_deskml_exports() -> None:
    source = (ROOT / "deskml" / "services" / "metrics.py").read_text("utf-8")
    assert 'f"{PREFIX}_queued_requests"' in source and 'PREFIX = "deskml"' in source
