"""The chart's generated files and ``helm template``, shared by the install tests.

Two files are generated and committed, each with a drift test:

- ``charts/llmops/templates/crds/<name>.yaml``: each CRD of ``manifests/crds/`` wrapped in the chart's
  ``crds.install`` switch, labels and ``crds.keep`` annotation (the spec is copied verbatim);
- ``manifests/install.yaml``: the chart rendered with default values, after a Namespace.

``LLMOPS_UPDATE_GOLDEN=1 python -m pytest tests/install`` rewrites both (or ``python -m tests.install.chart``).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.install.tools import find

ROOT = Path(__file__).parents[2]
CHART = ROOT / "charts" / "llmops"
CRDS = ROOT / "manifests" / "crds"
CHART_CRDS = CHART / "templates" / "crds"
INSTALL = ROOT / "manifests" / "install.yaml"
RELEASE, NAMESPACE = "llmops", "llmops-system"

CRD_HEADER = """\
{{{{- if .Values.crds.install }}}}
# Generated from manifests/crds/{source} by tests/install/chart.py; do not edit.
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {name}
  labels:
    {{{{- include "llmops.labels" . | nindent 4 }}}}
  {{{{- if .Values.crds.keep }}}}
  annotations:
    helm.sh/resource-policy: keep
  {{{{- end }}}}
"""

NAMESPACE_DOC = f"""\
# The llmops operator: CRDs, RBAC, admission policy and the operator Deployment, rendered from
# charts/llmops with its default values (`helm template {RELEASE} charts/llmops -n {NAMESPACE}
# --skip-tests`, labelled app.kubernetes.io/managed-by: kubectl) by
# tests/install/chart.py; do not edit. Apply with:
#   kubectl apply --server-side -f manifests/install.yaml
apiVersion: v1
kind: Namespace
metadata:
  name: {NAMESPACE}
  labels:
    app.kubernetes.io/part-of: llmops
    # the operator's pod passes the restricted Pod Security Standard
    pod-security.kubernetes.io/enforce: restricted
"""


def crd_template(source: Path) -> str:
    """The chart template of one CRD file: our metadata, then its spec exactly as generated."""
    crd = yaml.safe_load(source.read_text())
    if set(crd) != {"apiVersion", "kind", "metadata", "spec"} or crd["kind"] != "CustomResourceDefinition":
        raise ValueError(f"{source}: expected a CustomResourceDefinition with metadata and spec only")
    spec = yaml.safe_dump({"spec": crd["spec"]}, sort_keys=False, width=110)
    if "{{" in spec or "}}" in spec:
        raise ValueError(f"{source}: '{{{{' or '}}}}' in the spec would be read as a Helm template")
    header = CRD_HEADER.format(source=source.name, name=crd["metadata"]["name"])
    return header + spec + "{{- end }}\n"


def crd_templates() -> dict[Path, str]:
    return {CHART_CRDS / p.name: crd_template(p) for p in sorted(CRDS.glob("*.yaml"))}


def helm_template(*args: str, kube_version: str | None = None, check: bool = True) -> str:
    """``helm template`` of the chart (release llmops in llmops-system) with extra ``args``."""
    cmd = [str(find("helm")), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args]
    if kube_version:
        cmd += ["--kube-version", kube_version]
    got = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and got.returncode != 0:
        raise AssertionError(f"{' '.join(cmd[1:])} failed:\n{got.stderr}")
    return got.stdout if got.returncode == 0 else got.stderr


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def install_yaml() -> str:
    """The Namespace, then the chart without its test hook; applied by kubectl, so labelled so."""
    rendered = helm_template("--skip-tests")
    return NAMESPACE_DOC + rendered.replace(
        "app.kubernetes.io/managed-by: Helm", "app.kubernetes.io/managed-by: kubectl"
    )


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def regenerate() -> list[Path]:
    """Write every generated file that differs; return those written."""
    written = []
    CHART_CRDS.mkdir(parents=True, exist_ok=True)
    wanted = crd_templates()
    for stale in set(CHART_CRDS.glob("*.yaml")) - set(wanted):
        stale.unlink()
        written.append(stale)
    for path, text in [*wanted.items(), (INSTALL, None)]:
        text = install_yaml() if text is None else text  # after the CRD templates: it renders them
        if not path.exists() or path.read_text() != text:
            write_atomic(path, text)
            written.append(path)
    return written


def updating() -> bool:
    return os.environ.get("LLMOPS_UPDATE_GOLDEN") == "1"


if __name__ == "__main__":
    for p in regenerate():
        print(f"wrote {p.relative_to(ROOT)}")
