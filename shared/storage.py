"""Object storage for inputs and results: S3-compatible (boto3) or a local directory."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from shared.errors import NotFound
from shared.settings import Settings


class Storage(Protocol):
    """The few operations samq needs."""

    def put(self, key: str, data: bytes, content_type: str) -> None: ...
    def get(self, key: str) -> bytes: ...
    def delete(self, key: str) -> None: ...
    def delete_prefix(self, prefix: str) -> int: ...
    def ensure(self, expire_days: int | None = None) -> None: ...
    def presign(self, key: str, expires_s: int) -> str | None: ...


class FileStorage:
    """Objects as files under one directory (one machine, nothing else installed)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise ValueError(f"storage key escapes the root: {key!r}")
        return path

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Write atomically (write then rename) so readers never see half a file."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    def get(self, key: str) -> bytes:
        """Read an object or raise NotFound."""
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(f"stored object {key} not found") from exc

    def delete(self, key: str) -> None:
        """Remove an object if it exists."""
        self._path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object whose key starts with `prefix` (a folder, ending in /); returns how many."""
        folder = self._path(prefix.rstrip("/"))
        if not folder.is_dir():
            return 0
        count = sum(1 for path in folder.rglob("*") if path.is_file())
        shutil.rmtree(folder, ignore_errors=True)
        return count

    def ensure(self, expire_days: int | None = None) -> None:
        """Create the root directory (the retention sweep alone deletes expired files)."""
        self.root.mkdir(parents=True, exist_ok=True)

    def presign(self, key: str, expires_s: int) -> str | None:
        """Files have no URL of their own: the gateway serves them."""
        return None


class S3Storage:
    """Objects in one bucket of an S3-compatible server."""

    def __init__(self, client, bucket: str, public_client=None) -> None:
        self.client = client
        self.bucket = bucket
        self.public_client = public_client or client  # signs URLs for the endpoint clients can reach

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Upload one object."""
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def get(self, key: str) -> bytes:
        """Download one object or raise NotFound."""
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                raise NotFound(f"stored object {key} not found") from exc
            raise

    def delete(self, key: str) -> None:
        """Remove an object (S3 answers the same whether or not it existed)."""
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object whose key starts with `prefix`; returns how many."""
        count = 0
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objects:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
                count += len(objects)
        return count

    def ensure(self, expire_days: int | None = None) -> None:
        """Create the bucket when it does not exist; with `expire_days`, a lifecycle rule as a backstop.

        The worker's retention sweep deletes a job's objects when its record expires; the rule removes
        whatever a sweep missed (inputs/ and results/ only) some days later.
        """
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)
        if expire_days:
            rules = [{"ID": f"samq-expire-{prefix.rstrip('/')}", "Filter": {"Prefix": prefix}, "Status": "Enabled",
                      "Expiration": {"Days": expire_days}} for prefix in ("inputs/", "results/")]
            self.client.put_bucket_lifecycle_configuration(
                Bucket=self.bucket, LifecycleConfiguration={"Rules": rules})

    def presign(self, key: str, expires_s: int) -> str | None:
        """A time-limited GET URL (signed locally, no request is made)."""
        return self.public_client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s
        )


def make_storage(settings: Settings, max_attempts: int = 3) -> Storage:
    """The storage backend named by the settings; S3 calls are tried `max_attempts` times with backoff.

    The gateway keeps the default (a client waits: fail fast with 503, nothing charged); workers pass
    settings.storage_max_attempts to ride out an S3 outage before the job's own retries even start.
    """
    url = urlparse(settings.storage)
    if url.scheme == "file":
        return FileStorage(Path(url.netloc + url.path))
    if url.scheme == "s3":
        def client(endpoint: str | None):
            return boto3.client(
                "s3",
                endpoint_url=endpoint,
                aws_access_key_id=settings.s3_access_key_id,
                aws_secret_access_key=settings.s3_secret_access_key,
                region_name=settings.s3_region,
                config=Config(retries={"max_attempts": max_attempts, "mode": "standard"},
                              s3={"addressing_style": "path"}, signature_version="s3v4"),
            )

        public = client(settings.s3_public_endpoint_url) if settings.s3_public_endpoint_url else None
        return S3Storage(client(settings.s3_endpoint_url), url.netloc or settings.s3_bucket, public)
    raise ValueError(f"unsupported storage URL {settings.storage!r} (use s3://BUCKET or file://DIR)")
