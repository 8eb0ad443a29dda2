"""One snapshot in a store: its objects, written through the encoding and read back verified."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import botocore.exceptions
import zstandard

from ..errors import SnapshotCorruptError, SnapshotIncompleteError, SnapshotKeyError, StoreAccessError, \
    StoreUnreachableError
from .base import ObjectStore, SnapshotBeingDeleted
from .codec import (PLAIN, ChunkReader, DamagedObject, Encoding, EncodingWriter, IdentityMissing, IdentityWrong,
                    decode, decoded_chunks, sha256_checked)
from .folder import FolderStore

MANIFEST_NAME = "manifest.json"
# The snapshot asset's key, in one place: the step that captures, and the stem of every snapshot's name.
SNAPSHOT_ASSET = "prod_snapshot"
FOLDER_PREFIX = f"{SNAPSHOT_ASSET}_"
REFRESH = "Re-materialize prod_snapshot for this partition with refresh: true."


def snapshot_name(partition: str) -> str:
    """`2026-11-25` -> `prod_snapshot_20261125`, the name a cron script would use too."""
    return f"{FOLDER_PREFIX}{partition.replace('-', '')}"


@dataclass
class SnapshotLocation:
    """Where one partition's snapshot is, how new objects are encoded, and who may decode them."""

    store: ObjectStore
    name: str
    encoding: Encoding = PLAIN
    identities: list = field(default_factory=list)
    # Set by verify_snapshot once every object's sha256 matched the manifest.
    verified: bool = field(default=False, compare=False)

    @classmethod
    def folder(cls, path: Path | str, encoding: Encoding = PLAIN, identities: list | None = None
               ) -> "SnapshotLocation":
        path = Path(path)
        return cls(FolderStore(path.parent), path.name, encoding, identities or [])

    @property
    def url(self) -> str:
        return self.store.location(self.name)

    def __str__(self) -> str:
        return self.url

    def object_name(self, table_key: str) -> str:
        return f"{table_key}.csv{self.encoding.suffix()}"

    def writer(self, file: str) -> EncodingWriter:
        return EncodingWriter(self.store.writer(self.name, file), self.encoding)

    def read_manifest_bytes(self) -> bytes | None:
        with store_errors(self.store):
            return self.store.get(self.name, MANIFEST_NAME)

    def write_manifest_bytes(self, data: bytes) -> None:
        with store_errors(self.store):
            self.store.put(self.name, MANIFEST_NAME, data)

    def remove_manifest(self) -> None:
        with store_errors(self.store):
            self.store.delete(self.name, [MANIFEST_NAME])

    def files(self) -> dict[str, int]:
        with store_errors(self.store):
            return self.store.files(self.name)

    def lease(self, *, exclusive: bool):
        return _lease(self, exclusive)

    def stored_chunks(self, entry, *, check: bool = True) -> Iterator[bytes]:
        """The object's stored bytes, checked against the manifest's size and sha256 as they stream
        (unless `check` is False: the caller verified them and the store keeps them stable)."""
        try:
            chunks = self.store.read(self.name, entry.file)
        except FileNotFoundError:
            raise SnapshotCorruptError(f"Snapshot object {self.url}/{entry.file} for table {entry.key} is missing. "
                                       f"{REFRESH}") from None

        def changed(digest: str, size: int) -> SnapshotCorruptError:
            return SnapshotCorruptError(
                f"Snapshot object {self.url}/{entry.file} for table {entry.key} was changed after capture "
                f"(sha256 {digest[:12]}…, {size} bytes or more; manifest says {entry.sha256[:12]}…, "
                f"{entry.stored_bytes} bytes). Nothing was loaded from it. {REFRESH}")

        return sha256_checked(chunks, entry.sha256, entry.stored_bytes, changed) if check else chunks

    def read_into(self, entry, write: Callable[[bytes], None]) -> None:
        """Push the table's CSV (a split table's parts in order) to `write`, decoded; raises before
        the stream ends if damaged."""
        for part in entry.objects:
            self.read_object_into(part, write)

    def read_object_into(self, part, write: Callable[[bytes], None]) -> None:
        """One stored object's CSV to `write`, decoded and checked.

        Once verify_snapshot has hashed this location's objects (`verified`), a store that keeps
        them stable under the step's lease is not hashed a second time; an object store is.
        """
        check = not (self.verified and self.store.stable_while_leased)
        with decoding_errors(self, part):
            decode(self.stored_chunks(part, check=check), compression=part.compression,
                   encryption=part.encryption, identities=self.identities, write=write, expected_bytes=part.bytes)

    def open_csv(self, entry) -> io.BufferedReader:
        """The table's CSV as a file to read (for readers that pull), decoded and verified."""
        def chunks() -> Iterator[bytes]:
            for part in entry.objects:
                yield from _guarded(decoded_chunks(self.stored_chunks(part), compression=part.compression,
                                                   encryption=part.encryption, identities=self.identities,
                                                   expected_bytes=part.bytes), self, part)
        return io.BufferedReader(ChunkReader(chunks()), buffer_size=1 << 20)

    def require_identity(self, entries) -> None:
        """An encrypted snapshot needs the identity: say so before anything is read or written."""
        if any(e.encryption == "age" for e in entries) and not self.identities:
            raise SnapshotKeyError(
                f"The snapshot {self.url} is encrypted (age) and SNAPSHOT_AGE_IDENTITY is not set, so it cannot "
                "be read; nothing was written. Set SNAPSHOT_AGE_IDENTITY to the age identity (AGE-SECRET-KEY-1...) "
                "whose public key is in snapshot.encrypt_to, from a secret, for the steps that load.")


def _guarded(chunks: Iterator[bytes], location: SnapshotLocation, entry) -> Iterator[bytes]:
    with decoding_errors(location, entry):
        yield from chunks


@contextmanager
def decoding_errors(location: SnapshotLocation, entry) -> Iterator[None]:
    """Codec errors as permanent errors that say what to do; the identity is never quoted."""
    where = f"{location.url}/{entry.file} ({entry.key})"
    try:
        with store_errors(location.store):
            yield
    except IdentityMissing:
        location.require_identity([entry])
        raise
    except IdentityWrong as exc:
        raise SnapshotKeyError(f"{exc} Snapshot object {where}. Nothing was written. Set SNAPSHOT_AGE_IDENTITY "
                               "to the identity whose public key is in snapshot.encrypt_to.") from None
    except (zstandard.ZstdError, DamagedObject) as exc:
        raise SnapshotCorruptError(f"Snapshot object {where} does not decompress ({exc}). The load was rolled "
                                   f"back. {REFRESH}") from None


# What stores say when they refuse boto3's checksum headers (B2, R2, older MinIO, Ceph).
_CHECKSUM_WORDS = ("checksum", "content-md5", "contentmd5", "aws-chunked", "trailer")


@contextmanager
def store_errors(store: ObjectStore) -> Iterator[None]:
    """What the object store said, as an error that names the store and the setting to check."""
    where = store.location()
    try:
        yield
    except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError,
            botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectionClosedError) as exc:
        raise StoreUnreachableError(
            f"The object store for {where} did not answer at {getattr(store, 'endpoint_url', None) or 'AWS S3'} "
            f"({exc.__class__.__name__}). If the endpoint is wrong, fix snapshot.s3.endpoint_url in "
            "replication.yaml; if the store is down, the step is retried.") from None
    except botocore.exceptions.NoCredentialsError:
        raise StoreAccessError(
            f"No credentials for the object store {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or AWS_PROFILE, or give the host or pod a role) for every step. Nothing was written.") from None
    except botocore.exceptions.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("NoSuchBucket",):
            raise StoreAccessError(f"The bucket of {where} does not exist: create it, or fix snapshot.store in "
                                   "replication.yaml. Nothing was written.") from None
        message = str(exc.response.get("Error", {}).get("Message", ""))
        if any(word in f"{code} {message}".lower() for word in _CHECKSUM_WORDS):
            raise StoreAccessError(
                f"The object store of {where} refused a request for its checksum headers ({code}: {message}). "
                "Many S3-compatible stores refuse the CRC32 checksums boto3 sends by default: set "
                "snapshot.s3.checksums: when_required in replication.yaml (auto does so whenever "
                "snapshot.s3.endpoint_url is set). The manifest's sha256 still proves every object.") from None
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "ExpiredToken"):
            raise StoreAccessError(
                f"The object store refused {where} ({code}): check the credentials the steps get "
                "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the role) and that they may read, write "
                "and delete under that prefix. Nothing was written.") from None
        raise


@contextmanager
def _lease(location: SnapshotLocation, exclusive: bool) -> Iterator[None]:
    try:
        with store_errors(location.store), location.store.lease(location.name, exclusive=exclusive):
            yield
    except SnapshotBeingDeleted:
        raise SnapshotIncompleteError(
            f"The snapshot {location.url} is being deleted by retention (snapshot.keep), so it was not read. "
            "Materialize prod_snapshot for this partition again, or raise snapshot.keep.") from None
