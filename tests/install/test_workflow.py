""".github/workflows/ci.yml cannot run here: check that what it names exists and agrees with the chart."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.install.chart import CHART, ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def jobs() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]


def script(job: str) -> str:
    return "\n".join(step.get("run", "") for step in jobs()[job]["steps"])


def test_the_test_job_is_ci_run():
    assert re.search(r"^bash \.ci/run$", script("test"), re.M)
    assert (ROOT / ".ci" / "run").exists()


def test_kind_builds_every_dockerfile_under_the_charts_default_names():
    kind = jobs()["kind"]
    run = script("kind")
    built = dict(re.findall(r'docker build -f (Dockerfile\.\w+) -t "\$(\w+)" \.', run))
    assert set(built) == {p.name for p in ROOT.glob("Dockerfile.*")}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    app = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert kind["env"][built["Dockerfile.operator"]] == f"{values['image']['repository']}:{app}"
    assert kind["env"][built["Dockerfile.train"]] == values["config"]["trainerImage"]
    assert kind["env"][built["Dockerfile.serve"]] == values["config"]["serverImage"]
    loaded = re.search(r"kind load docker-image --name llmops (.+)", run).group(1)
    assert all(f'"${var}"' in loaded for var in built.values())


def test_kind_applies_examples_that_exist_and_waits_on_their_names():
    assert jobs()["kind"]["env"]["LLMOPS_E2E_CLUSTER"] == "current"  # not the simulated cluster
    run = script("kind")
    for path in re.findall(r"-f (manifests/\S+\.yaml)", run):
        doc = yaml.safe_load((ROOT / path).read_text())
        kind = doc["kind"].lower()
        assert f"wait {kind}/{doc['metadata']['name']} " in run, path
    for target in re.findall(r"pytest (tests/[\w/.]+)", run):
        assert (ROOT / target).exists(), target
    assert (
        Path(ROOT / "charts" / "llmops" / "Chart.yaml").exists()
        and "helm install llmops charts/llmops" in run
    )
