"""Where models, data and checkpoints live: local paths, ``pvc://claim/path`` and ``s3://bucket/key``.

The trainer and the server share this so one URI means the same bytes everywhere. ``pvc://`` URIs
resolve under ``$LLMOPS_PVC_ROOT`` (default ``/mnt/pvc``), where the operator mounts each claim a pod
uses. ``s3://`` objects are fetched with boto3 into a cache; a download is resumed from its partial
file (ranged GET) and verified against the object's size and ETag before it is renamed into place,
so an interrupted pod never leaves a half-written model behind.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_PVC_ROOT = "/mnt/pvc"
DEFAULT_CACHE = "~/.cache/llmops"
_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class Location:
    """A parsed storage URI."""

    scheme: str  # "file", "pvc" or "s3"
    bucket: str  # the claim for pvc, the bucket for s3, "" for file
    key: str  # the path inside the claim or bucket, or the local path

    def __str__(self) -> str:
        return self.key if self.scheme == "file" else f"{self.scheme}://{self.bucket}/{self.key}".rstrip("/")


def parse(uri: str) -> Location:
    """Split a URI into scheme, bucket/claim and key; raise ValueError naming what is wrong."""
    if not uri or not uri.strip():
        raise ValueError("location is empty")
    for scheme in ("s3", "pvc"):
        prefix = f"{scheme}://"
        if uri.startswith(prefix):
            bucket, _, key = uri[len(prefix) :].partition("/")
            if not bucket:
                raise ValueError(
                    f"{uri!r}: missing {'bucket' if scheme == 's3' else 'claim name'} after {prefix}"
                )
            if ".." in key.split("/"):
                raise ValueError(f"{uri!r}: '..' is not allowed in a {scheme} path")
            return Location(scheme, bucket, key.strip("/"))
    if "://" in uri:
        raise ValueError(f"{uri!r}: unsupported scheme (use s3://, pvc:// or a local path)")
    return Location("file", "", uri)


def pvc_root() -> Path:
    return Path(os.environ.get("LLMOPS_PVC_ROOT", DEFAULT_PVC_ROOT))


def cache_root() -> Path:
    return Path(os.environ.get("LLMOPS_CACHE_DIR", DEFAULT_CACHE)).expanduser()


def resolve(uri: str, cache_dir: Path | None = None, client: Any = None) -> Path:
    """Return a local path holding what ``uri`` names, downloading ``s3://`` prefixes first."""
    loc = parse(uri)
    if loc.scheme == "file":
        return Path(loc.key).expanduser()
    if loc.scheme == "pvc":
        return pvc_root() / loc.bucket / loc.key
    target = (cache_dir or cache_root()) / "s3" / loc.bucket / loc.key
    download_prefix(loc, target, client=client)
    return target


def _s3(client: Any) -> Any:
    if client is not None:
        return client
    import boto3  # lazy: boto3 is the `aws` extra and slow to import

    return boto3.client("s3")


def _list(client: Any, loc: Location) -> list[dict[str, Any]]:
    """Objects under the prefix (or the single object the key names)."""
    prefix = loc.key
    objects: list[dict[str, Any]] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            # "models/a" must not match "models/ab/...": keep the key itself or what lies below it.
            if not prefix or key == prefix or key.startswith(prefix.rstrip("/") + "/"):
                objects.append(obj)
    return objects


def download_prefix(loc: Location, target: Path, client: Any = None) -> list[Path]:
    """Mirror every object under ``loc`` into ``target``; skip files already complete."""
    client = _s3(client)
    objects = _list(client, loc)
    if not objects:
        raise FileNotFoundError(f"{loc}: no objects found")
    written = []
    for obj in objects:
        key = obj["Key"]
        # A URI naming one object lands at ``target``; a prefix is mirrored below it.
        dest = target if key == loc.key else target / key[len(loc.key) :].lstrip("/")
        written.append(download_object(client, loc.bucket, key, dest, size=obj["Size"], etag=obj.get("ETag")))
    return written


def download_object(
    client: Any, bucket: str, key: str, dest: Path, size: int, etag: str | None = None
) -> Path:
    """Download one object resumably: append to ``dest.part`` from where it stopped, verify, rename."""
    if dest.is_file() and dest.stat().st_size == size:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if have > size:
        part.unlink()
        have = 0
    if have < size:
        extra = {"Range": f"bytes={have}-"} if have else {}
        body = client.get_object(Bucket=bucket, Key=key, **extra)["Body"]
        with part.open("ab") as fh:
            for chunk in iter(lambda: body.read(_CHUNK), b""):
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
    got = part.stat().st_size
    if got != size:
        raise OSError(f"s3://{bucket}/{key}: downloaded {got} bytes, expected {size}")
    _verify_etag(part, etag, f"s3://{bucket}/{key}")
    os.replace(part, dest)
    return dest


def _verify_etag(path: Path, etag: str | None, name: str) -> None:
    """Check a single-part ETag (the MD5); multipart ETags ("…-N") are checked by size alone."""
    if not etag:
        return
    etag = etag.strip('"')
    if "-" in etag:
        return
    md5 = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            md5.update(chunk)
    if md5.hexdigest() != etag:
        path.unlink(missing_ok=True)
        raise OSError(f"{name}: checksum mismatch (ETag {etag}, got {md5.hexdigest()}); partial file removed")


def upload_file(path: Path, uri: str, client: Any = None) -> None:
    """Upload one file and verify it landed whole (size and MD5 via the ETag of a single PUT)."""
    loc = parse(uri)
    if loc.scheme != "s3":
        raise ValueError(f"{uri!r}: upload needs an s3:// location")
    client = _s3(client)
    data_md5 = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            data_md5.update(chunk)
    with path.open("rb") as fh:
        client.put_object(Bucket=loc.bucket, Key=loc.key, Body=fh)
    head = client.head_object(Bucket=loc.bucket, Key=loc.key)
    if head["ContentLength"] != path.stat().st_size or head["ETag"].strip('"') != data_md5.hexdigest():
        raise OSError(f"{uri}: upload verification failed (size or checksum differs)")


def upload_dir(directory: Path, uri: str, client: Any = None) -> int:
    """Upload every file below ``directory`` under the ``uri`` prefix; returns the count."""
    client = _s3(client)
    base = uri.rstrip("/")
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    for p in files:
        upload_file(p, f"{base}/{p.relative_to(directory).as_posix()}", client=client)
    return len(files)


def main(argv: list[str] | None = None) -> int:
    """``python -m llmops_core.storage fetch URI DEST``: what an init container runs to stage a model."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m llmops_core.storage")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="copy an s3:// prefix (or object) to a local directory")
    fetch.add_argument("uri")
    fetch.add_argument("dest", type=Path)
    args = parser.parse_args(argv)
    loc = parse(args.uri)
    if loc.scheme != "s3":
        parser.error(f"{args.uri}: fetch takes an s3:// location")
    files = download_prefix(loc, args.dest)
    print(f"fetched {len(files)} file(s) from {args.uri} to {args.dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
