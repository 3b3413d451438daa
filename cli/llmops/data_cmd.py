"""``llmops data upload``: put a dataset (or a model directory) in S3 where a TrainingJob reads it.

A rerun resumes at two levels. Each object carries the MD5 of its file in its metadata
(``llmops-md5``), and a file whose object already has the same size and MD5 is skipped, so an
interrupted upload of many shards continues with the next one. A large file goes up in parts whose
upload id is remembered (:mod:`llmops.multipart`), so it continues from its last part. Small files go
through boto3's transfer manager.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .errors import CliError

MD5_KEY = "llmops-md5"
MULTIPART_THRESHOLD = 64 * 1024 * 1024
_CHUNK = 8 * 1024 * 1024


def md5(path: Path) -> str:
    import hashlib

    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def plan(source: Path, uri: str) -> tuple[str, list[tuple[Path, str]]]:
    """The bucket and (file, key) pairs: a directory lands below the prefix, a file at the key
    (or below it when the URI ends with /). Hidden files and directories are left out."""
    from llmops_core.storage import parse

    try:
        loc = parse(uri)
    except ValueError as e:
        raise CliError(str(e)) from None
    if loc.scheme != "s3":
        raise CliError(f"{uri}: upload needs an s3:// location")
    if source.is_file():
        key = f"{loc.key}/{source.name}" if uri.endswith("/") or not loc.key else loc.key
        return loc.bucket, [(source, key.lstrip("/"))]
    if not source.is_dir():
        raise CliError(f"{source}: no such file or directory")
    files = sorted(
        p
        for p in source.rglob("*")
        if p.is_file() and not any(s.startswith(".") for s in p.relative_to(source).parts)
    )
    if not files:
        raise CliError(f"{source}: no files to upload")
    prefix = f"{loc.key}/" if loc.key else ""
    return loc.bucket, [(p, prefix + p.relative_to(source).as_posix()) for p in files]


def already_there(client: Any, bucket: str, key: str, size: int, digest: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    if head["ContentLength"] != size:
        return False
    etag = head.get("ETag", "").strip('"')
    return head.get("Metadata", {}).get(MD5_KEY) == digest or etag == digest


@click.group()
def data() -> None:
    """Move datasets and models to where clusters read them."""


@data.command("upload")
@click.argument("source", type=click.Path(exists=True, path_type=Path), metavar="PATH")
@click.argument("uri", metavar="s3://BUCKET/PREFIX")
@click.option("--region", help="AWS region (default: the profile's or AWS_REGION).")
@click.option("--profile", help="AWS named profile.")
@click.option(
    "--concurrency", type=click.IntRange(1, 64), default=8, show_default=True, help="Parallel parts."
)
def upload(source: Path, uri: str, region: str | None, profile: str | None, concurrency: int) -> None:
    """Upload PATH (a file or a directory) to S3, with a progress bar; a rerun resumes.

    Files whose object already holds the same bytes (size and MD5) are skipped; a large file
    interrupted mid-way continues from its last uploaded part.

    \b
    Examples:
      llmops data upload ./fineweb-shards s3://my-datasets/fineweb/train/
      llmops data upload corpus.txt s3://my-datasets/tiny/corpus.txt --profile ml
    """
    import boto3
    from boto3.s3.transfer import TransferConfig
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from . import multipart

    bucket, pairs = plan(source, uri)
    client = boto3.Session(profile_name=profile, region_name=region).client("s3")
    console = Console(stderr=True)
    todo, skipped = [], 0
    with console.status("comparing with what is already in S3"):
        for path, key in pairs:
            size, digest = path.stat().st_size, md5(path)
            if already_there(client, bucket, key, size, digest):
                skipped += 1
            else:
                todo.append((path, key, size, digest))
    total = sum(size for *_, size, _ in todo)
    config = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, max_concurrency=concurrency)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("uploading", total=total)
        for path, key, size, digest in todo:
            bar.update(task, description=path.name)
            if size >= MULTIPART_THRESHOLD:
                multipart.upload(
                    client, path, bucket, key, digest, MD5_KEY, lambda n: bar.advance(task, n), concurrency
                )
                continue
            client.upload_file(
                str(path),
                bucket,
                key,
                ExtraArgs={"Metadata": {MD5_KEY: digest}},
                Config=config,
                Callback=lambda n: bar.advance(task, n),
            )
    click.echo(
        f"uploaded {len(todo)} file(s), {total / 1e6:.1f} MB, to s3://{bucket}/; {skipped} already there",
        err=True,
    )
