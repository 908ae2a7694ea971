"""An S3 endpoint for tests (moto's server on a loopback port) and helpers to fill and read buckets."""

from __future__ import annotations

import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from tests.harness.binaries import moto_server_argv
from tests.harness.processes import LOOPBACK, ManagedProcess, ProcessRegistry, free_port, wait_until

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

S3_READY_TIMEOUT_S = 30.0
S3_PROBE_TIMEOUT_S = 1.0
S3_REGION = "us-east-1"
S3_ACCESS_KEY_ID = "testing"
S3_SECRET_ACCESS_KEY = "testing"
# The smallest part S3 accepts (except the last one); a file above this is uploaded in parts.
MIN_PART_SIZE = 5 * 1024 * 1024


class MotoServer:
    """moto's server mode: a real HTTP S3 endpoint with real multipart uploads."""

    def __init__(self, registry: ProcessRegistry, *, name: str = "moto-s3") -> None:
        self.port = free_port()
        self.process: ManagedProcess = registry.create(
            name, [*moto_server_argv(), "-H", LOOPBACK, "-p", str(self.port)]
        )

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self, timeout: float = S3_READY_TIMEOUT_S) -> MotoServer:
        self.process.start()
        wait_until(self.answers, timeout, f"moto S3 server at {self.endpoint_url}", process=self.process)
        return self

    def stop(self) -> int | None:
        return self.process.stop()

    def answers(self) -> bool:
        with urllib.request.urlopen(f"{self.endpoint_url}/", timeout=S3_PROBE_TIMEOUT_S) as response:
            return bool(response.status == 200)

    def client(self) -> S3Client:
        return s3_client(self.endpoint_url)


def s3_credentials_env(endpoint_url: str | None = None) -> dict[str, str]:
    """Dummy credentials (and the endpoint, if given) as environment variables for child processes."""
    env = {
        "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": S3_REGION,
    }
    if endpoint_url is not None:
        env["AWS_ENDPOINT_URL_S3"] = endpoint_url
    return env


def s3_client(endpoint_url: str) -> S3Client:
    """A boto3 S3 client for a test endpoint: dummy credentials, us-east-1, path-style addressing."""
    session = boto3.session.Session(
        aws_access_key_id=S3_ACCESS_KEY_ID,
        aws_secret_access_key=S3_SECRET_ACCESS_KEY,
        region_name=S3_REGION,
    )
    return session.client(
        "s3",
        endpoint_url=endpoint_url,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2, "mode": "standard"}),
    )


@dataclass(frozen=True)
class S3Bucket:
    """A fresh bucket on the test S3 endpoint, with a client for it."""

    endpoint_url: str
    client: S3Client
    name: str

    @classmethod
    def create(cls, endpoint_url: str, prefix: str = "test") -> S3Bucket:
        client = s3_client(endpoint_url)
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        client.create_bucket(Bucket=name)
        return cls(endpoint_url=endpoint_url, client=client, name=name)

    def url(self, prefix: str = "") -> str:
        return f"s3://{self.name}/{prefix}"


def upload_tree(
    client: S3Client,
    bucket: str,
    prefix: str,
    local_dir: Path,
    *,
    multipart_threshold: int = MIN_PART_SIZE,
) -> dict[str, int]:
    """Upload every file under ``local_dir`` to ``s3://bucket/prefix/<relative path>``.

    Files of ``multipart_threshold`` bytes or more go up as multipart uploads (parts of at least 5 MiB,
    the S3 minimum). Returns the size of each uploaded key.
    """
    config = TransferConfig(
        multipart_threshold=multipart_threshold,
        multipart_chunksize=max(multipart_threshold, MIN_PART_SIZE),
        use_threads=False,
    )
    prefix = prefix.strip("/")
    sizes: dict[str, int] = {}
    for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        relative = path.relative_to(local_dir).as_posix()
        key = f"{prefix}/{relative}" if prefix else relative
        client.upload_file(str(path), bucket, key, Config=config)
        sizes[key] = path.stat().st_size
    return sizes


def list_sizes(client: S3Client, bucket: str, prefix: str = "") -> dict[str, int]:
    """Every key under ``prefix`` with its size."""
    sizes: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            sizes[item["Key"]] = item["Size"]
    return sizes
