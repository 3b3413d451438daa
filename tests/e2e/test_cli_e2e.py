"""The CLI's cluster commands against a real API server: server-side apply, dry runs, --wait, delete.

What the in-memory fake (tests/cli/fake_api.py) cannot show: the API server's own apply semantics
(managedFields owned by `llmops`, created/unchanged/configured), admission on a server dry run
(CEL rules), and the operator's status driving `--wait` to an exit code.

Pods finish either by themselves (kind runs the real trainer image) or, on the simulated cluster,
when annotated with llmops.dev/simulated-exit-code (kwok's stage; the annotation is inert on kind).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from e2e_cluster import GROUP, VERSION, InThread, clients, namespace, wait

from llmops.main import cli

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parents[2]
EXIT_CODE = "llmops.dev/simulated-exit-code"


@pytest.fixture(scope="module")
def cluster():
    _api, custom, core, _apps = clients()
    ns = namespace(core)
    try:
        with InThread(ns):
            yield ns, custom, core
    finally:
        core.delete_namespace(ns)


def llmops(*args: str):
    return CliRunner().invoke(cli, list(args))


def tiny(tmp_path: Path, name: str, **hyperparameters: object) -> Path:
    doc = yaml.safe_load((ROOT / "manifests/examples/tiny-cpu-training.yaml").read_text())
    doc["metadata"]["name"] = name
    doc["spec"]["output"] = {"location": f"pvc://{name}-checkpoints/model"}
    doc["spec"]["hyperparameters"].update(hyperparameters)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_apply_is_server_side_and_idempotent(cluster, tmp_path: Path) -> None:
    ns, custom, _core = cluster
    path = tiny(tmp_path, "apply-me")
    first = llmops("deploy", str(path), "-n", ns)
    assert first.exit_code == 0 and first.stdout == "trainingjob.llmops.dev/apply-me created\n", first.output
    assert llmops("deploy", str(path), "-n", ns).stdout == "trainingjob.llmops.dev/apply-me unchanged\n"
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "trainingjobs", "apply-me")
    managers = {(m["manager"], m["operation"]) for m in obj["metadata"]["managedFields"]}
    assert ("llmops", "Apply") in managers

    doc = yaml.safe_load(path.read_text())
    doc["metadata"]["labels"] = {"team": "a"}
    path.write_text(yaml.safe_dump(doc))
    dry = llmops("deploy", str(path), "-n", ns, "--dry-run=server")
    assert dry.stdout == "trainingjob.llmops.dev/apply-me configured (server dry run)\n", dry.output
    stored = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "trainingjobs", "apply-me")
    assert "labels" not in stored["metadata"]  # a dry run stores nothing
    assert llmops("deploy", str(path), "-n", ns).stdout == "trainingjob.llmops.dev/apply-me configured\n"
    stored = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "trainingjobs", "apply-me")
    assert stored["metadata"]["labels"] == {"team": "a"}


def test_server_dry_run_reports_admission_errors_in_one_line(cluster, tmp_path: Path) -> None:
    ns, _custom, _core = cluster
    path = tiny(tmp_path, "immutable")
    assert llmops("deploy", str(path), "-n", ns).exit_code == 0
    doc = yaml.safe_load(path.read_text())
    doc["spec"]["hyperparameters"]["maxSteps"] = 7  # immutable once the job exists (a CEL rule)
    path.write_text(yaml.safe_dump(doc))
    result = llmops("deploy", str(path), "-n", ns, "--dry-run=server")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert result.stderr.startswith("Error: the API server refused: 422")
    assert "spec.hyperparameters: Invalid value: is immutable" in result.stderr


def finish_pods(core, ns: str, name: str, stop: threading.Event) -> None:
    """On the simulated cluster, let the job's pods exit 0 once they run (as the trainer would)."""
    while not stop.is_set():
        for pod in core.list_namespaced_pod(ns, label_selector=f"llmops.dev/trainingjob={name}").items:
            annotations = pod.metadata.annotations or {}
            if pod.status.phase == "Running" and EXIT_CODE not in annotations:
                core.patch_namespaced_pod(
                    pod.metadata.name, ns, {"metadata": {"annotations": {EXIT_CODE: "0"}}}
                )
        time.sleep(1)


def test_deploy_wait_status_and_delete(cluster, tmp_path: Path) -> None:
    ns, _custom, core = cluster
    path = tiny(tmp_path, "waited", maxSteps=20)
    stop = threading.Event()
    helper = threading.Thread(target=finish_pods, args=(core, ns, "waited", stop), daemon=True)
    helper.start()
    try:
        result = llmops("deploy", str(path), "-n", ns, "--wait", "--timeout", "600")
    finally:
        stop.set()
    assert result.exit_code == 0, result.output
    assert "trainingjob.llmops.dev/waited succeeded" in result.stdout

    listed = json.loads(llmops("status", "-n", ns, "-o", "json").stdout)
    assert {i["metadata"]["name"]: i["status"]["phase"] for i in listed["items"]}["waited"] == "Succeeded"
    table = llmops("status", "tj/waited", "-n", ns)
    assert table.exit_code == 0 and "Succeeded" in table.stdout

    deleted = llmops("delete", "-f", str(path), "-n", ns)
    assert deleted.stdout == "trainingjob.llmops.dev/waited deleted\n"
    wait(lambda: llmops("status", "tj/waited", "-n", ns).exit_code == 1, what="the TrainingJob to go")


def test_wait_times_out_with_exit_code_3(cluster, tmp_path: Path) -> None:
    ns, _custom, _core = cluster
    result = llmops("deploy", str(tiny(tmp_path, "slow")), "-n", ns, "--wait", "--timeout", "1")
    assert result.exit_code == 3 and "trainingjob.llmops.dev/slow still" in result.stderr
