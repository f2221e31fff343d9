"""docs/kubernetes/gateway.yaml: valid against the Kubernetes schemas (offline, from the
kubernetes-validate package), and consistent with the gateway it deploys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.settings import KEYS, PREFIX

MANIFEST = Path(__file__).resolve().parents[1] / "docs" / "kubernetes" / "gateway.yaml"
KUBERNETES = "1.33.0"


def _documents() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    return {d["kind"]: d for d in docs}


@pytest.mark.parametrize("kind", ["Secret", "ConfigMap", "Deployment", "Service",
                                  "PodDisruptionBudget"])
def test_each_resource_is_valid_against_the_schema(kind: str) -> None:
    # strict: unknown fields are errors too. The schemas ship in the package: no network.
    kubernetes_validate.validate(_documents()[kind], KUBERNETES, strict=True)


def test_a_broken_resource_is_refused() -> None:
    """The validation can fail: a probe with a field Kubernetes does not have."""
    deployment = _documents()["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["path"] = "/x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)


def test_the_deployment_fits_the_gateway() -> None:
    docs = _documents()
    pod = docs["Deployment"]["spec"]["template"]
    [container] = pod["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"][
        "memory"]
    config = docs["ConfigMap"]["data"]
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["spec"]["terminationGracePeriodSeconds"] > pre_stop + float(
        config["IOTSPHERE_SHUTDOWN_GRACE"])
    # Every variable set is a setting the gateway reads (a renamed one would be ignored).
    names = set(config) | {e["name"] for e in container["env"]}
    known = {PREFIX + key for key in KEYS} | {PREFIX + "LOG_LEVEL"}
    assert names <= known, names - known
    # Store DSNs and the JWT key come from the Secret, and every key used is in it but the
    # optional ones (read replicas), which a Secret may leave out.
    secret = docs["Secret"]["stringData"]
    refs = [e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e]
    used = {r["key"] for r in refs if not r.get("optional")}
    used |= {i["key"] for v in pod["spec"]["volumes"] for i in v["secret"]["items"]}
    assert used == set(secret)
    optional = {r["key"] for r in refs if r.get("optional")}
    assert optional == {"registry-read-dsn", "assets-read-dsn", "telemetry-read-dsn"}
    for name in ("REGISTRY_DSN", "ASSETS_DSN", "TELEMETRY_DSN", "REDIS_URL"):
        assert PREFIX + name not in config
    # The budget and the Service select the Deployment's pods.
    labels = pod["metadata"]["labels"]
    assert docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert docs["Service"]["spec"]["selector"].items() <= labels.items()
