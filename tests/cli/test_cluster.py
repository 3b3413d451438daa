"""`llmops deploy|status|logs|delete` against an in-memory API server over HTTP (tests/cli/fake_api.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from llmops import errors
from llmops.main import cli
from tests.cli.fake_api import FakeApi, Server
from tests.manifests import ROOT, endpoint, training_job

EX = ROOT / "manifests" / "examples"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[FakeApi, Server]]:
    fake = FakeApi()
    server = Server(fake, tmp_path)
    yield fake, server
    server.close()


def llmops(server: Server, *args: str):
    return CliRunner().invoke(cli, [*args, "--kubeconfig", str(server.kubeconfig)])


def test_deploy_is_server_side_apply_as_llmops(api: tuple[FakeApi, Server]) -> None:
    fake, server = api
    result = llmops(
        server, "deploy", str(EX / "tiny-cpu-training.yaml"), str(EX / "endpoint-from-training.yaml")
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "trainingjob.llmops.dev/tiny-cpu created",
        "inferenceendpoint.llmops.dev/tiny-cpu-chat created",
    ]
    patches = [r for r in fake.requests if r.method == "PATCH"]
    assert [r.path for r in patches] == [
        "/apis/llmops.dev/v1alpha1/namespaces/team-a/trainingjobs/tiny-cpu",
        "/apis/llmops.dev/v1alpha1/namespaces/team-a/inferenceendpoints/tiny-cpu-chat",
    ]
    assert all(r.content_type == "application/apply-patch+yaml" for r in patches)
    assert all(r.query["fieldManager"] == ["llmops"] and "force" not in r.query for r in patches)
    # the body is the manifest as written (no defaults added), with the namespace filled in
    sent = patches[0].body
    written = yaml.safe_load((EX / "tiny-cpu-training.yaml").read_text())
    assert sent["spec"] == written["spec"] and sent["metadata"] == {"name": "tiny-cpu", "namespace": "team-a"}


def test_deploy_again_says_unchanged_then_configured(api: tuple[FakeApi, Server], tmp_path: Path) -> None:
    fake, server = api
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(training_job()))
    assert llmops(server, "deploy", str(path)).stdout == "trainingjob.llmops.dev/job created\n"
    assert llmops(server, "deploy", str(path)).stdout == "trainingjob.llmops.dev/job unchanged\n"
    path.write_text(yaml.safe_dump(training_job(hyperparameters={"maxSteps": 7})))
    assert (
        llmops(server, "deploy", str(path), "--force-conflicts").stdout
        == "trainingjob.llmops.dev/job configured\n"
    )
    assert fake.requests[-1].query["force"] == ["true"]
    assert fake.objects[("trainingjobs", "team-a", "job")]["spec"]["hyperparameters"] == {"maxSteps": 7}


def test_deploy_namespace_rules(api: tuple[FakeApi, Server], tmp_path: Path) -> None:
    fake, server = api
    job = training_job()
    job["metadata"]["namespace"] = "ml"
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    clash = llmops(server, "deploy", str(path), "-n", "other")
    assert clash.exit_code == 1 and "does not match --namespace 'other'" in clash.stderr
    assert not fake.objects
    assert llmops(server, "deploy", str(path), "-n", "ml").exit_code == 0
    path.write_text(yaml.safe_dump(endpoint()))
    assert llmops(server, "deploy", str(path), "--context", "other").exit_code == 0
    assert set(fake.objects) == {("trainingjobs", "ml", "job"), ("inferenceendpoints", "team-b", "ep")}


def test_deploy_applies_nothing_when_any_document_is_invalid(
    api: tuple[FakeApi, Server], tmp_path: Path
) -> None:
    fake, server = api
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump_all([training_job(), endpoint(replicas={"min": 3, "max": 1})]))
    result = llmops(server, "deploy", str(path))
    assert result.exit_code == 1 and f"{path}:2: spec.replicas: min must not exceed max" in result.stderr
    assert fake.requests == []


def test_server_dry_run_stores_nothing(api: tuple[FakeApi, Server], tmp_path: Path) -> None:
    fake, server = api
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(training_job()))
    result = llmops(server, "deploy", str(path), "--dry-run=server")
    assert result.stdout == "trainingjob.llmops.dev/job created (server dry run)\n"
    assert fake.requests[-1].query["dryRun"] == ["All"] and not fake.objects


def test_client_dry_run_prints_the_operators_children_and_contacts_nothing(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["deploy", str(EX / "cpu-endpoint.yaml"), "--dry-run=client", "--kubeconfig", str(tmp_path / "none")],
    )
    assert result.exit_code == 0, result.output
    render = CliRunner().invoke(cli, ["render", str(EX / "cpu-endpoint.yaml")])
    assert result.stdout == render.stdout
    assert next(o["kind"] for o in yaml.safe_load_all(result.stdout)) == "Deployment"
    in_ns = CliRunner().invoke(cli, ["deploy", str(EX / "cpu-endpoint.yaml"), "--dry-run=client", "-n", "ml"])
    assert {o["metadata"]["namespace"] for o in yaml.safe_load_all(in_ns.stdout)} == {"ml"}


def test_no_kubeconfig_is_one_line_exit_4(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(training_job()))
    result = CliRunner().invoke(cli, ["deploy", str(path), "--kubeconfig", str(tmp_path / "absent")])
    assert result.exit_code == errors.UNREACHABLE
    assert result.stderr.count("\n") == 1 and "no usable Kubernetes credentials" in result.stderr


def job_with_status(name: str, phase: str, **status: object) -> dict:
    obj = training_job()
    obj["metadata"] = {"name": name, "namespace": "team-a", "generation": 1}
    obj["status"] = {"phase": phase, "observedGeneration": 1, **status}
    return obj


def endpoint_with_status(name: str, phase: str, ready: int, replicas: int) -> dict:
    obj = endpoint()
    obj["metadata"] = {"name": name, "namespace": "team-a", "generation": 1}
    obj["status"] = {"phase": phase, "observedGeneration": 1, "readyReplicas": ready, "replicas": replicas,
                     "url": f"http://{name}.team-a.svc.cluster.local"}  # fmt: skip
    return obj


def test_status_table_and_formats(api: tuple[FakeApi, Server]) -> None:
    fake, server = api
    progress = {"step": 50, "totalSteps": 200, "loss": 3.14159, "eta": "2m10s", "summary": "50/200"}
    fake.put(job_with_status("tiny", "Running", progress=progress))
    fake.put(endpoint_with_status("chat", "Degraded", 1, 2))
    other = job_with_status("elsewhere", "Pending")
    other["metadata"]["namespace"] = "team-b"
    fake.put(other)
    result = llmops(server, "status")
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.stdout.splitlines() if line.strip()]
    assert lines[0][:6] == ["TRAININGJOB", "PHASE", "PROGRESS", "LOSS", "ETA", "AGE"]
    assert lines[1][:5] == ["tiny", "Running", "50/200", "3.1416", "2m10s"]
    assert lines[2][:4] == ["INFERENCEENDPOINT", "PHASE", "READY", "URL"]
    assert lines[3][:4] == ["chat", "Degraded", "1/2", "http://chat.team-a.svc.cluster.local"]
    assert "elsewhere" not in result.stdout
    every = llmops(server, "status", "-A")
    assert "elsewhere" in every.stdout and every.stdout.split()[0] == "NAMESPACE"
    listed = json.loads(llmops(server, "status", "-o", "json").stdout)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["tiny", "chat"]
    one = list(yaml.safe_load_all(llmops(server, "status", "tj/tiny", "-o", "yaml").stdout))
    assert one[0]["status"]["progress"]["step"] == 50 and one[0]["kind"] == "TrainingJob"
    missing = llmops(server, "status", "nope")
    assert missing.exit_code == 1 and "nope: no TrainingJob or InferenceEndpoint" in missing.stderr


def test_status_shows_why_a_resource_is_stuck(api: tuple[FakeApi, Server]) -> None:
    fake, server = api
    stalled = {
        "type": "Stalled",
        "status": "True",
        "reason": "InvalidSpec",
        "message": "spec.data.train: empty",
    }
    fake.put(job_with_status("bad", "Invalid", conditions=[stalled]))
    assert "InvalidSpec: spec.data.train: empty" in llmops(server, "status").stdout


def pod(name: str, label: str, owner: str, **labels: str) -> dict:
    return {"metadata": {"name": name, "namespace": "team-a", "labels": {label: owner, **labels}}}


def test_logs_of_ranks_and_replicas(api: tuple[FakeApi, Server]) -> None:
    fake, server = api
    fake.put(job_with_status("big", "Running"))
    fake.put(endpoint_with_status("chat", "Ready", 2, 2))
    tj, rt, ri = (
        "llmops.dev/trainingjob",
        "training.kubeflow.org/replica-type",
        "training.kubeflow.org/replica-index",
    )
    fake.pods = [
        pod("big-worker-0", tj, "big", **{rt: "worker", ri: "0"}),
        pod("big-master-0", tj, "big", **{rt: "master", ri: "0"}),
        pod("big-worker-1", tj, "big", **{rt: "worker", ri: "1"}),
        pod("chat-a", "llmops.dev/inferenceendpoint", "chat"),
        pod("chat-b", "llmops.dev/inferenceendpoint", "chat"),
    ]
    fake.logs = {("big-master-0", "pytorch"): "m1\nm2\n", ("big-worker-0", "pytorch"): "w0\n",
                 ("big-worker-1", "pytorch"): "w1\n", ("chat-a", "server"): "a1\n", ("chat-b", "server"): "b1\n"}  # fmt: skip
    assert llmops(server, "logs", "big").stdout == "[rank 0] m1\n[rank 0] m2\n"
    assert llmops(server, "logs", "big", "--rank", "2").stdout == "[rank 2] w1\n"
    assert (
        llmops(server, "logs", "big", "--all").stdout
        == "[rank 0] m1\n[rank 0] m2\n[rank 1] w0\n[rank 2] w1\n"
    )
    assert llmops(server, "logs", "chat").stdout == "[chat-a] a1\n[chat-b] b1\n"
    follow = llmops(server, "logs", "chat", "-f")
    assert sorted(follow.stdout.splitlines()) == ["[chat-a] a1", "[chat-b] b1"]
    assert [r.query.get("follow") for r in fake.requests if r.path.endswith("/log")][-2:] == [
        ["true"],
        ["true"],
    ]
    nope = llmops(server, "logs", "big", "--rank", "7")
    assert nope.exit_code == 1 and "no pod for rank 7 (ranks with pods: 0, 1, 2)" in nope.stderr
    assert llmops(server, "logs", "chat", "--rank", "1").exit_code == 1


def test_delete_by_name_and_file(api: tuple[FakeApi, Server]) -> None:
    fake, server = api
    fake.put(job_with_status("tiny-cpu", "Running"))
    fake.put(endpoint_with_status("chat", "Ready", 1, 1))
    by_file = llmops(server, "delete", "-f", str(EX / "tiny-cpu-training.yaml"))
    assert by_file.stdout == "trainingjob.llmops.dev/tiny-cpu deleted\n"
    assert llmops(server, "delete", "ie/chat").stdout == "inferenceendpoint.llmops.dev/chat deleted\n"
    assert not fake.objects
    gone = llmops(server, "delete", "chat")
    assert gone.exit_code == 1 and "not found in namespace team-a: chat" in gone.stderr
    assert llmops(server, "delete", "chat", "--ignore-not-found").exit_code == 0


class Scripted:
    """A cluster whose objects change on each poll, as the operator would change them."""

    def __init__(self, frames: list[dict[str, dict | None]]) -> None:
        self.frames, self.polls = frames, 0

    def get(self, kind, namespace: str, name: str) -> dict | None:
        frame = self.frames[min(self.polls // 2, len(self.frames) - 1)]  # two refs read per poll
        self.polls += 1
        return frame[name]


def refs() -> list:
    from llmops.kube import KINDS

    return [(KINDS["TrainingJob"], "team-a", "tiny"), (KINDS["InferenceEndpoint"], "team-a", "chat")]


def run_poll(cluster: Scripted, timeout: float = 100.0) -> tuple[int, list, list]:
    from llmops.wait import poll

    shown: list = []
    now = [0.0]
    code, summaries = poll(
        cluster, refs(), timeout, shown.append, interval=10, clock=lambda: now[0],
        sleep=lambda s: now.__setitem__(0, now[0] + s),
    )  # fmt: skip
    return code, summaries, shown


def test_wait_succeeds_when_the_job_succeeds_and_the_endpoint_is_ready() -> None:
    running = {"step": 10, "totalSteps": 200, "loss": 4.2, "eta": "3m00s"}
    code, summaries, shown = run_poll(Scripted([
        {"tiny": job_with_status("tiny", "Running", progress=running), "chat": endpoint_with_status("chat", "WaitingForModel", 0, 1)},
        {"tiny": job_with_status("tiny", "Succeeded"), "chat": endpoint_with_status("chat", "Pending", 0, 1)},
        {"tiny": job_with_status("tiny", "Succeeded"), "chat": endpoint_with_status("chat", "Ready", 1, 1)},
    ]))  # fmt: skip
    assert code == errors.OK and len(shown) == 3
    assert next((s.phase, s.progress, s.loss, s.eta) for s, _ in shown[0]) == (
        "Running",
        "10/200",
        "4.2000",
        "3m00s",
    )
    assert [s.phase for s in summaries] == ["Succeeded", "Ready"]


def test_wait_fails_at_once_on_failure_and_ignores_stale_status() -> None:
    stale = job_with_status("tiny", "Failed")
    stale["metadata"]["generation"] = 2  # the operator has not seen the new spec: not a failure yet
    ready = endpoint_with_status("chat", "Ready", 1, 1)
    code, summaries, shown = run_poll(Scripted([
        {"tiny": stale, "chat": ready}, {"tiny": job_with_status("tiny", "Failed"), "chat": ready},
    ]))  # fmt: skip
    assert code == errors.FAILED and len(shown) == 2 and summaries[0].phase == "Failed"


def test_wait_fails_on_a_failed_source_job_or_rollout() -> None:
    from llmops.summary import FAILED, PENDING, outcome

    ep = endpoint_with_status("chat", "Pending", 0, 1)
    ep["status"]["conditions"] = [
        {"type": "Stalled", "status": "True", "reason": "ModelFailed", "message": "x"}
    ]
    assert outcome(ep) == FAILED
    ep["status"]["conditions"] = [
        {"type": "Stalled", "status": "False", "reason": "ModelFailed", "message": "x"}
    ]
    assert outcome(ep) == PENDING
    ep["status"]["phase"] = "Degraded"
    ep["status"]["conditions"] = [
        {"type": "Ready", "status": "False", "reason": "RolloutFailed", "message": "x"}
    ]
    assert outcome(ep) == FAILED


def test_wait_times_out_with_code_3_and_a_deleted_resource_fails() -> None:
    pending = {
        "tiny": job_with_status("tiny", "Pending"),
        "chat": endpoint_with_status("chat", "Pending", 0, 1),
    }
    code, _, shown = run_poll(Scripted([pending]), timeout=25)
    assert code == errors.TIMEOUT and len(shown) == 4  # t = 0, 10, 20, 30
    code, summaries, _ = run_poll(Scripted([{**pending, "chat": None}]))
    assert code == errors.FAILED and summaries[1].message == "deleted"


def test_deploy_wait_exit_code_reflects_the_outcome(api: tuple[FakeApi, Server], tmp_path: Path) -> None:
    import threading
    import time

    fake, server = api
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(training_job()))

    def operator(phase: str) -> None:  # the operator's status write, a moment after the apply
        for _ in range(100):
            obj = fake.objects.get(("trainingjobs", "team-a", "job"))
            if obj is not None:
                obj["status"] = {"phase": phase, "observedGeneration": obj["metadata"]["generation"]}
                return
            time.sleep(0.05)

    for phase, code, stream, text in (("Succeeded", 0, "stdout", "trainingjob.llmops.dev/job succeeded"),
                                      ("Failed", 1, "stderr", "trainingjob.llmops.dev/job failed")):  # fmt: skip
        fake.objects.clear()
        t = threading.Thread(target=operator, args=(phase,))
        t.start()
        result = llmops(server, "deploy", str(path), "--wait", "--timeout", "30")
        t.join()
        assert result.exit_code == code, result.output
        assert text in getattr(result, stream)
    fake.objects.clear()
    timed_out = llmops(server, "deploy", str(path), "--wait", "--timeout", "0")
    assert timed_out.exit_code == errors.TIMEOUT and "still unknown after 0 s" in timed_out.stderr
