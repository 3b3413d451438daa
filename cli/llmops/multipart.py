"""Resumable multipart upload of one large file to S3.

boto3's transfer manager forgets an interrupted multipart upload, so a rerun would send a 50 GB
shard again from its first byte. Here the upload id lives in a small state file (under the llmops
cache), and a rerun asks S3 which parts it already holds (``ListParts``) and sends only the rest.
Every part carries its Content-MD5, so S3 rejects a corrupted part; the finished object carries the
whole file's MD5 in its metadata, which is how ``llmops data upload`` recognises it next time.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

MIN_PART = 16 * 1024 * 1024
MAX_PARTS = 10_000  # S3's limit


def part_size(size: int, minimum: int = MIN_PART) -> int:
    return max(minimum, math.ceil(size / MAX_PARTS))


def state_file(bucket: str, key: str) -> Path:
    from llmops_core.storage import cache_root

    name = hashlib.sha256(f"{bucket}/{key}".encode()).hexdigest()[:32]
    return cache_root() / "uploads" / f"{name}.json"


def _save(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)


def _parts_held(client: Any, bucket: str, key: str, upload_id: str) -> dict[int, dict[str, Any]] | None:
    """The parts S3 holds for the upload; None when the upload is gone (completed or aborted)."""
    from botocore.exceptions import ClientError

    try:
        pages = client.get_paginator("list_parts").paginate(Bucket=bucket, Key=key, UploadId=upload_id)
        return {p["PartNumber"]: p for page in pages for p in page.get("Parts", [])}
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("NoSuchUpload", "404"):
            return None
        raise


def upload(
    client: Any,
    path: Path,
    bucket: str,
    key: str,
    digest: str,
    metadata_key: str,
    advance: Callable[[int], None],
    concurrency: int = 8,
    minimum_part: int = MIN_PART,
) -> int:
    """Upload ``path`` to ``bucket/key``, resuming a previous attempt; returns the parts sent now."""
    size = path.stat().st_size
    chunk = part_size(size, minimum_part)
    count = max(1, math.ceil(size / chunk))
    where = state_file(bucket, key)
    state = json.loads(where.read_text()) if where.is_file() else None
    if state and (state.get("md5"), state.get("size"), state.get("part_size")) != (digest, size, chunk):
        state = None  # the file changed since: start over (the stale upload expires by lifecycle rules)
    held = _parts_held(client, bucket, key, state["upload_id"]) if state else None
    if held is None:
        upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, Metadata={metadata_key: digest})[
            "UploadId"
        ]
        state, held = {"upload_id": upload_id, "md5": digest, "size": size, "part_size": chunk}, {}
        _save(where, state)

    def expected(n: int) -> int:
        return min(chunk, size - (n - 1) * chunk)

    done = {n: p["ETag"] for n, p in held.items() if p.get("Size") == expected(n)}
    advance(sum(expected(n) for n in done))

    def send(n: int) -> tuple[int, str]:
        with path.open("rb") as fh:
            fh.seek((n - 1) * chunk)
            body = fh.read(expected(n))
        md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
        etag = client.upload_part(
            Bucket=bucket, Key=key, UploadId=state["upload_id"], PartNumber=n, Body=body, ContentMD5=md5
        )["ETag"]
        advance(len(body))
        return n, etag

    todo = [n for n in range(1, count + 1) if n not in done]
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        done.update(pool.map(send, todo))
    client.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=state["upload_id"],
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": done[n]} for n in range(1, count + 1)]},
    )
    where.unlink(missing_ok=True)
    return len(todo)
