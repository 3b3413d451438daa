"""llmops_core.storage: URI parsing, pvc:// resolution, resumable and verified S3 transfers (moto)."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from llmops_core import storage


def test_parse() -> None:
    assert storage.parse("s3://bucket/a/b/") == storage.Location("s3", "bucket", "a/b")
    assert storage.parse("pvc://claim/x") == storage.Location("pvc", "claim", "x")
    assert storage.parse("/tmp/x") == storage.Location("file", "", "/tmp/x")
    for bad, fragment in [("", "empty"), ("s3://", "missing bucket"), ("ftp://x/y", "unsupported"),
                          ("pvc://c/../../etc", "'..'")]:  # fmt: skip
        with pytest.raises(ValueError, match=fragment):
            storage.parse(bad)


def test_pvc_resolves_under_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLMOPS_PVC_ROOT", str(tmp_path))
    assert storage.resolve("pvc://claim/models/a") == tmp_path / "claim" / "models" / "a"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="llmops-test")
        yield client


def test_download_prefix_mirrors_only_below_it(s3, tmp_path: Path) -> None:
    s3.put_object(Bucket="llmops-test", Key="models/m/config.json", Body=b"{}")
    s3.put_object(Bucket="llmops-test", Key="models/m/sub/weights.bin", Body=b"w" * 1000)
    s3.put_object(Bucket="llmops-test", Key="models/mm/other", Body=b"not me")
    path = storage.resolve("s3://llmops-test/models/m", cache_dir=tmp_path, client=s3)
    assert (path / "config.json").read_bytes() == b"{}"
    assert (path / "sub" / "weights.bin").read_bytes() == b"w" * 1000
    assert not (tmp_path / "s3" / "llmops-test" / "models" / "mm").exists()


def test_download_resumes_from_partial_file(s3, tmp_path: Path) -> None:
    body = bytes(range(256)) * 100
    s3.put_object(Bucket="llmops-test", Key="big.bin", Body=body)
    dest = tmp_path / "big.bin"
    (tmp_path / "big.bin.part").write_bytes(body[:1000])
    calls = []
    real = s3.get_object

    def spy(**kwargs):
        calls.append(kwargs.get("Range"))
        return real(**kwargs)

    s3.get_object = spy
    head = s3.head_object(Bucket="llmops-test", Key="big.bin")
    storage.download_object(s3, "llmops-test", "big.bin", dest, size=len(body), etag=head["ETag"])
    assert calls == ["bytes=1000-"]
    assert dest.read_bytes() == body and not (tmp_path / "big.bin.part").exists()


def test_corrupt_download_is_refused_and_removed(s3, tmp_path: Path) -> None:
    s3.put_object(Bucket="llmops-test", Key="f", Body=b"abcdef")
    (tmp_path / "f.part").write_bytes(b"XYZ")  # wrong bytes, right prefix length
    with pytest.raises(OSError, match="checksum mismatch"):
        storage.download_object(
            s3,
            "llmops-test",
            "f",
            tmp_path / "f",
            size=6,
            etag=s3.head_object(Bucket="llmops-test", Key="f")["ETag"],
        )
    assert not (tmp_path / "f").exists() and not (tmp_path / "f.part").exists()


def test_missing_prefix(s3, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no objects"):
        storage.resolve("s3://llmops-test/nothing/here", cache_dir=tmp_path, client=s3)


def test_upload_dir_verifies(s3, tmp_path: Path) -> None:
    (tmp_path / "d" / "x").mkdir(parents=True)
    (tmp_path / "d" / "a.txt").write_text("a")
    (tmp_path / "d" / "x" / "b.txt").write_text("b")
    assert storage.upload_dir(tmp_path / "d", "s3://llmops-test/out/", client=s3) == 2
    assert s3.get_object(Bucket="llmops-test", Key="out/x/b.txt")["Body"].read() == b"b"


def test_fetch_command(s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s3.put_object(Bucket="llmops-test", Key="m/config.json", Body=b"{}")
    monkeypatch.setattr(storage, "_s3", lambda client: s3)
    assert storage.main(["fetch", "s3://llmops-test/m", str(tmp_path / "model")]) == 0
    assert (tmp_path / "model" / "config.json").read_bytes() == b"{}"
