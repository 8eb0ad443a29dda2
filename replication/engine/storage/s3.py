"""Snapshots in an S3-compatible object store (AWS S3, MinIO, R2, Ceph): `s3://bucket/prefix`.

Objects are uploaded in parts of PART_BYTES as they stream in, so a step holds one part per
table it writes, never a table; an object appears only when its upload completes. Credentials
come from boto3's standard chain (environment, profile, instance or pod role), never from us.

There is no flock on an object store, so retention and readers meet through two kinds of
small objects beside a snapshot's data:
- a lease, `{name}/.leases/{id}`, which every step that reads or writes the snapshot puts
  before it starts and renews every LEASE_RENEW_SECONDS while it works; a lease not renewed
  for `lease_seconds` (its step died) no longer counts;
- a tombstone, `{name}/.deleting`, which pruning puts before it looks for leases.
Each side writes its own object first and then looks for the other's. S3 lists and reads are
strongly consistent after a write, so at least one of them sees the other: either pruning sees
the lease and keeps the snapshot, or the reader sees the tombstone and does not start.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from urllib.parse import urlparse

import boto3
import botocore.config
import botocore.exceptions

from .base import ObjectStore, ObjectWriter, SnapshotBeingDeleted, StoredObject

# S3's smallest part is 5 MiB and an upload has at most 10,000 parts: 16 MiB parts carry a table of
# 156 GiB of stored (compressed) bytes, and two tables written at once hold 32 MiB.
PART_BYTES = 16 << 20
READ_CHUNK = 1 << 20
LEASES = ".leases"
TOMBSTONE = ".deleting"
LEASE_SECONDS = 600
LEASE_RENEW_SECONDS = 60
_BOOKKEEPING = (f"{LEASES}/", TOMBSTONE)
# How the client treats S3's optional checksums: `when_supported` is AWS's default since boto3
# 1.36 (a CRC32 on every upload, validated on every download); `when_required` sends one only
# where the API demands it, as clients did before, which S3-compatible stores (B2, R2, older
# MinIO, Ceph) accept. `auto` is when_supported on AWS and when_required on any other endpoint.
# Integrity never rests on these: the manifest's sha256 covers every object.
CHECKSUM_MODES = ("auto", "when_required", "when_supported")


def checksum_mode(setting: str, endpoint_url: str | None) -> str:
    if setting not in CHECKSUM_MODES:
        raise ValueError(f"{setting!r} is not one of {', '.join(CHECKSUM_MODES)}")
    if setting == "auto":
        return "when_required" if endpoint_url else "when_supported"
    return setting


def _content_md5_instead_of_crc32(request, **_) -> None:
    """DeleteObjects must carry a checksum; stores older than S3's CRC32 default accept only Content-MD5."""
    for name in list(request.headers.keys()):
        if name.lower().startswith("x-amz-checksum-") or name.lower() == "x-amz-sdk-checksum-algorithm":
            del request.headers[name]
    body = request.body or b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    digest = hashlib.md5(body, usedforsecurity=False).digest()
    request.headers["Content-MD5"] = base64.b64encode(digest).decode("ascii")


def is_s3_url(url: str | None) -> bool:
    """Whether `snapshot.store` names an object store (`s3://...`) rather than a folder."""
    return (url or "").startswith("s3://")


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix")."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"{url!r} is not an s3://bucket/prefix URL")
    return parsed.netloc, parsed.path.strip("/")


class _MultipartWriter(ObjectWriter):
    def __init__(self, store: "S3Store", key: str):
        self._store = store
        self._key = key
        self._buffer = bytearray()
        self._parts: list[dict] = []
        self._upload_id: str | None = None
        self._sha = hashlib.sha256()
        self._size = 0

    def write(self, data) -> None:
        self._buffer += data
        self._sha.update(data)
        self._size += len(data)
        if len(self._buffer) >= PART_BYTES:
            self._send_part()

    def _send_part(self) -> None:
        client = self._store.client
        if self._upload_id is None:
            self._upload_id = client.create_multipart_upload(Bucket=self._store.bucket, Key=self._key)["UploadId"]
        number = len(self._parts) + 1
        answer = client.upload_part(Bucket=self._store.bucket, Key=self._key, UploadId=self._upload_id,
                                    PartNumber=number, Body=bytes(self._buffer))
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        self._buffer = bytearray()

    def commit(self) -> StoredObject:
        client = self._store.client
        try:
            if self._upload_id is None:
                client.put_object(Bucket=self._store.bucket, Key=self._key, Body=bytes(self._buffer))
            else:
                if self._buffer:
                    self._send_part()
                client.complete_multipart_upload(Bucket=self._store.bucket, Key=self._key, UploadId=self._upload_id,
                                                 MultipartUpload={"Parts": self._parts})
        except BaseException:
            self.abort()
            raise
        self._buffer = bytearray()
        return StoredObject(self._size, self._sha.hexdigest())

    def abort(self) -> None:
        self._buffer = bytearray()
        if self._upload_id is not None:
            try:
                self._store.client.abort_multipart_upload(Bucket=self._store.bucket, Key=self._key,
                                                          UploadId=self._upload_id)
            except botocore.exceptions.BotoCoreError:
                pass  # the bucket's lifecycle rule for incomplete uploads cleans up what this cannot
            except botocore.exceptions.ClientError:
                pass
            self._upload_id = None


class S3Store(ObjectStore):
    kind = "s3"

    def __init__(self, url: str, *, endpoint_url: str | None = None, region: str | None = None,
                 checksums: str = "auto", lease_seconds: float = LEASE_SECONDS,
                 renew_seconds: float = LEASE_RENEW_SECONDS):
        self.url = url.rstrip("/")
        self.bucket, self.prefix = parse_s3_url(url)
        self.endpoint_url = endpoint_url
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.checksums = checksum_mode(checksums, endpoint_url)
        # Few, quick retries: an endpoint that does not answer is a configuration error to report,
        # and the asset's own retry policy handles an outage.
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, region_name=region,
            config=botocore.config.Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5,
                                          read_timeout=60, max_pool_connections=16,
                                          request_checksum_calculation=self.checksums,
                                          response_checksum_validation=self.checksums),
        )
        if self.checksums == "when_required":
            self.client.meta.events.register("before-sign.s3.DeleteObjects", _content_md5_instead_of_crc32)

    def _key(self, name: str, file: str = "") -> str:
        parts = [p for p in (self.prefix, name, file) if p]
        return "/".join(parts)

    def location(self, name: str = "") -> str:
        return f"{self.url}/{name}" if name else self.url

    def writer(self, name: str, file: str) -> ObjectWriter:
        return _MultipartWriter(self, self._key(name, file))

    def read(self, name: str, file: str) -> Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(name, file))["Body"]
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                raise FileNotFoundError(self.location(f"{name}/{file}")) from None
            raise

        def chunks() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(READ_CHUNK)
            finally:
                body.close()

        return chunks()

    def put(self, name: str, file: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(name, file), Body=data)

    def get(self, name: str, file: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(name, file))["Body"].read()
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                return None
            raise

    def _list(self, prefix: str, delimiter: str | None = None) -> Iterator[dict]:
        kwargs = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        for page in self.client.get_paginator("list_objects_v2").paginate(**kwargs):
            yield page

    def _objects(self, name: str) -> dict[str, dict]:
        base = self._key(name) + "/"
        return {item["Key"][len(base):]: item for page in self._list(base) for item in page.get("Contents", [])}

    def files(self, name: str) -> dict[str, int]:
        return {file: item["Size"] for file, item in self._objects(name).items() if not file.startswith(_BOOKKEEPING)}

    def delete(self, name: str, files: list[str]) -> None:
        keys = [self._key(name, f) for f in files]
        for start in range(0, len(keys), 1000):
            batch = keys[start:start + 1000]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch],
                                                                   "Quiet": True})

    def snapshots(self) -> list[str]:
        base = self._key("") + "/" if self.prefix else ""
        names = []
        for page in self._list(base, "/"):
            names += [p["Prefix"][len(base):].rstrip("/") for p in page.get("CommonPrefixes", [])]
        return sorted(names)

    # Leases: see the module's docstring for why they work without a lock service.

    def _live(self, items: dict[str, dict], prefix: str) -> list[str]:
        now = datetime.now(timezone.utc)
        return [f for f, item in items.items() if f.startswith(prefix)
                and (now - item["LastModified"]).total_seconds() < self.lease_seconds]

    @contextmanager
    def lease(self, name: str, *, exclusive: bool) -> Iterator[None]:
        file = f"{LEASES}/{uuid.uuid4().hex}"
        self.put(name, file, b"exclusive" if exclusive else b"shared")
        try:
            objects = self._objects(name)
            if self._live(objects, TOMBSTONE):
                raise SnapshotBeingDeleted(self.location(name))
            if TOMBSTONE in objects:
                self.delete(name, [TOMBSTONE])  # left by a pruner that died; its deletion never finished
            stop = threading.Event()
            renewer = threading.Thread(target=self._renew, args=(name, file, stop), daemon=True,
                                       name=f"lease {name}")
            renewer.start()
            try:
                yield
            finally:
                stop.set()
                renewer.join()
        finally:
            self.delete(name, [file])

    def _renew(self, name: str, file: str, stop: threading.Event) -> None:
        while not stop.wait(self.renew_seconds):
            try:
                self.put(name, file, b"renewed")
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
                continue  # the next renewal may get through; the lease lasts lease_seconds

    def remove_if_unused(self, name: str) -> int | None:
        self.put(name, TOMBSTONE, b"")
        objects = self._objects(name)
        if self._live(objects, f"{LEASES}/"):
            self.delete(name, [TOMBSTONE])
            return None
        data = {f: item for f, item in objects.items() if f != TOMBSTONE}
        # The manifest first: if this is cut short, what is left is an unfinished snapshot, never loaded.
        ordered = sorted(data, key=lambda f: f != "manifest.json")
        self.delete(name, ordered[:1])
        self.delete(name, ordered[1:])
        self.delete(name, [TOMBSTONE])
        return sum(item["Size"] for f, item in data.items() if not f.startswith(f"{LEASES}/"))


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
