"""`llmops eks kubeconfig|check` and `llmops data upload` against moto's EKS and S3."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import yaml
from click.testing import CliRunner
from moto import mock_aws

from llmops.main import cli
from tests.cli.fake_api import FakeApi, Server

REGION = "us-west-2"
ROLE = "arn:aws:iam::123456789012:role/eks"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION, "AWS_CONFIG_FILE": str(tmp_path / "none"),
                        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


def make_cluster(*groups: dict) -> None:
    eks = boto3.client("eks", region_name=REGION)
    eks.create_cluster(name="ml", roleArn=ROLE, resourcesVpcConfig={"subnetIds": ["subnet-1"]})
    for g in groups:
        eks.create_nodegroup(clusterName="ml", nodeRole=ROLE, subnets=["subnet-1"], **g)


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_kubeconfig_merges_an_exec_entry(aws: None, tmp_path: Path) -> None:
    make_cluster()
    path = tmp_path / "kube" / "config"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "kind",
        "clusters": [{"name": "kind", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "contexts": [{"name": "kind", "context": {"cluster": "kind", "user": "kind"}}],
        "users": [{"name": "kind", "user": {"token": "t"}}],
    }))  # fmt: skip
    for _ in range(2):  # a second run replaces its entry instead of adding another
        result = invoke(
            "eks", "kubeconfig", "ml", "--region", REGION, "--kubeconfig", str(path), "--alias", "prod"
        )
        assert result.exit_code == 0, result.output
    config = yaml.safe_load(path.read_text())
    arn = "arn:aws:eks:us-west-2:123456789012:cluster/ml"
    assert config["current-context"] == "prod"
    assert [c["name"] for c in config["contexts"]] == ["kind", "prod"]
    assert [c["name"] for c in config["clusters"]] == ["kind", arn]
    described = boto3.client("eks", region_name=REGION).describe_cluster(name="ml")["cluster"]
    assert config["clusters"][1]["cluster"] == {
        "server": described["endpoint"], "certificate-authority-data": described["certificateAuthority"]["data"]
    }  # fmt: skip
    user = config["users"][1]["user"]
    assert user["exec"]["command"] == "aws" and "token" not in user
    assert user["exec"]["args"] == [
        "--region",
        REGION,
        "eks",
        "get-token",
        "--cluster-name",
        "ml",
        "--output",
        "json",
    ]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_kubeconfig_for_a_missing_cluster_is_one_line(aws: None, tmp_path: Path) -> None:
    result = invoke("eks", "kubeconfig", "nope", "--kubeconfig", str(tmp_path / "config"))
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("Error: AWS: ") and "ResourceNotFoundException" in result.stderr
    assert not (tmp_path / "config").exists()


GROUPS = (
    {"nodegroupName": "gpu", "instanceTypes": ["p5.48xlarge"], "amiType": "AL2_x86_64_GPU",
     "taints": [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]},
    {"nodegroupName": "trn", "instanceTypes": ["trn1.32xlarge"],
     "taints": [{"key": "dedicated", "value": "ml", "effect": "NO_SCHEDULE"}]},
    {"nodegroupName": "system", "instanceTypes": ["m6i.xlarge"]},
)  # fmt: skip


def daemonset(ns: str, name: str) -> dict:
    return {"metadata": {"namespace": ns, "name": name}}


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[tuple[FakeApi, Server]]:
    fake = FakeApi()
    server = Server(fake, tmp_path)
    yield fake, server
    server.close()


def test_check_reports_capacity_taints_and_missing_plugins(aws: None, kube: tuple[FakeApi, Server]) -> None:
    fake, server = kube
    make_cluster(*GROUPS)
    fake.extra["/apis/karpenter.sh/v1/nodepools"] = {"items": [{
        "metadata": {"name": "inference"},
        "spec": {"template": {"spec": {
            "requirements": [{"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": ["g6e"]}],
            "taints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]}}}}]}  # fmt: skip
    fake.extra["/apis/apps/v1/daemonsets"] = {
        "items": [daemonset("kube-system", "nvidia-device-plugin-daemonset")]
    }
    result = invoke("eks", "check", "ml", "--region", REGION, "--kubeconfig", str(server.kubeconfig))
    assert result.exit_code == 1, result.output
    out = " ".join(result.stdout.split())
    assert "node pool inference: nvidia-gpu ready for llmops pods" in out
    assert "node group trn: taint dedicated=ml:NoSchedule is not tolerated by llmops pods" in out
    assert (
        "error node group trn: no neuron device plugin DaemonSet; pods requesting aws.amazon.com/neuron will stay Pending"
        in out
    )
    assert "node group gpu: EFA-capable instances but no EFA device plugin" in out
    assert "nvidia device plugin: kube-system/nvidia-device-plugin-daemonset" in out
    assert "spec.resources.instanceTypes may name: p5.48xlarge, trn1.32xlarge" in out
    # with the Neuron and EFA plugins the cluster passes (the taint stays a warning)
    fake.extra["/apis/apps/v1/daemonsets"]["items"] += [daemonset("kube-system", "neuron-device-plugin"),
                                                        daemonset("kube-system", "aws-efa-k8s-device-plugin")]  # fmt: skip
    result = invoke("eks", "check", "ml", "--region", REGION, "--kubeconfig", str(server.kubeconfig))
    assert result.exit_code == 0, result.output
    assert "node group gpu: nvidia-gpu ready for llmops pods" in " ".join(result.stdout.split())


def test_check_without_cluster_access_still_reports_node_groups(aws: None, tmp_path: Path) -> None:
    make_cluster(GROUPS[0])
    result = invoke("eks", "check", "ml", "--kubeconfig", str(tmp_path / "absent"))
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "NodePools and device plugins not checked" in out and "p5.48xlarge" in out


def test_upload_directory_then_resume(aws: None, tmp_path: Path) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="data", CreateBucketConfiguration={"LocationConstraint": REGION})
    src = tmp_path / "shards"
    (src / "sub").mkdir(parents=True)
    (src / "a.jsonl").write_text('{"text": "a"}\n' * 100)
    (src / "sub" / "b.jsonl").write_text('{"text": "b"}\n')
    (src / ".cache").write_text("skip me")
    result = invoke("data", "upload", str(src), "s3://data/fineweb/train/")
    assert result.exit_code == 0, result.output
    assert "uploaded 2 file(s)" in result.stderr and "0 already there" in result.stderr
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="data")["Contents"])
    assert keys == ["fineweb/train/a.jsonl", "fineweb/train/sub/b.jsonl"]
    assert s3.get_object(Bucket="data", Key="fineweb/train/sub/b.jsonl")["Body"].read() == b'{"text": "b"}\n'
    again = invoke("data", "upload", str(src), "s3://data/fineweb/train")
    assert "uploaded 0 file(s)" in again.stderr and "2 already there" in again.stderr
    (src / "a.jsonl").write_text('{"text": "changed"}\n')
    changed = invoke("data", "upload", str(src), "s3://data/fineweb/train")
    assert "uploaded 1 file(s)" in changed.stderr and "1 already there" in changed.stderr
    assert (
        s3.get_object(Bucket="data", Key="fineweb/train/a.jsonl")["Body"].read() == b'{"text": "changed"}\n'
    )


def test_upload_single_file_and_bad_locations(aws: None, tmp_path: Path) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="data", CreateBucketConfiguration={"LocationConstraint": REGION})
    f = tmp_path / "corpus.txt"
    f.write_text("to be or not to be\n")
    assert invoke("data", "upload", str(f), "s3://data/tiny/").exit_code == 0
    assert invoke("data", "upload", str(f), "s3://data/exact.txt").exit_code == 0
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket="data")["Contents"]) == [
        "exact.txt",
        "tiny/corpus.txt",
    ]
    for uri, message in (("/local/dir", "upload needs an s3:// location"), ("s3://", "missing bucket")):
        bad = invoke("data", "upload", str(f), uri)
        assert bad.exit_code == 1 and message in bad.stderr and bad.stderr.count("\n") == 1


class FailingPart:
    """The S3 client, except that one part upload fails once (a dropped connection)."""

    def __init__(self, client, fail_part: int) -> None:
        self.client, self.fail_part, self.sent = client, fail_part, []

    def upload_part(self, **kwargs):
        if kwargs["PartNumber"] == self.fail_part:
            self.fail_part = -1
            raise ConnectionError("connection reset")
        self.sent.append(kwargs["PartNumber"])
        return self.client.upload_part(**kwargs)

    def __getattr__(self, name: str):
        return getattr(self.client, name)


def test_a_large_file_resumes_from_its_last_part(
    aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmops import data_cmd, multipart

    monkeypatch.setenv("LLMOPS_CACHE_DIR", str(tmp_path / "cache"))
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="data", CreateBucketConfiguration={"LocationConstraint": REGION})
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * (44 * 1024))  # 11 MiB: three 5 MiB parts, the last one short
    digest, part = data_cmd.md5(big), 5 * 1024 * 1024
    flaky = FailingPart(s3, fail_part=2)
    with pytest.raises(ConnectionError):
        multipart.upload(flaky, big, "data", "big.bin", digest, "llmops-md5", lambda n: None, 1, part)
    assert multipart.state_file("data", "big.bin").is_file() and flaky.sent == [1, 3]
    progress: list[int] = []
    again = FailingPart(s3, fail_part=-1)
    sent = multipart.upload(again, big, "data", "big.bin", digest, "llmops-md5", progress.append, 1, part)
    assert sent == 1 and again.sent == [2]  # parts 1 and 3 are counted, not sent again
    assert progress[0] == big.stat().st_size - part
    assert sum(progress) == big.stat().st_size
    assert s3.get_object(Bucket="data", Key="big.bin")["Body"].read() == big.read_bytes()
    assert s3.head_object(Bucket="data", Key="big.bin")["Metadata"]["llmops-md5"] == digest
    assert not multipart.state_file("data", "big.bin").exists()
    # the command takes this path above its threshold, and a rerun skips the finished object
    monkeypatch.setattr(data_cmd, "MULTIPART_THRESHOLD", 1024)
    result = invoke("data", "upload", str(big), "s3://data/big.bin")
    assert "uploaded 0 file(s)" in result.stderr and "1 already there" in result.stderr
    monkeypatch.setattr(multipart, "MIN_PART", part)
    result = invoke("data", "upload", str(big), "s3://data/copy.bin")
    assert result.exit_code == 0 and "uploaded 1 file(s)" in result.stderr, result.output
    assert s3.get_object(Bucket="data", Key="copy.bin")["Body"].read() == big.read_bytes()
