"""The one small interface every snapshot store offers: write a stream, read a stream, list, delete, lease.

Snapshots are names (`prod_snapshot_20261130`) holding objects (`public.orders.csv.zst`). A store
knows nothing of CSV, compression or encryption: those are filters stacked on its streams
(`codec.py`), as pgBackRest stacks them on its storage drivers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass


@dataclass(frozen=True)
class StoredObject:
    """What a finished write left in the store: its size and the sha256 of its bytes."""

    size: int
    sha256: str


class ObjectWriter(ABC):
    """A stream into one object: invisible to readers until `commit`, gone after `abort`."""

    @abstractmethod
    def write(self, data: bytes | bytearray | memoryview) -> None: ...

    @abstractmethod
    def commit(self) -> StoredObject: ...

    @abstractmethod
    def abort(self) -> None: ...


class SnapshotInUse(Exception):
    """Another step holds the snapshot (a lock on a folder, a lease on an object store)."""


class SnapshotBeingDeleted(Exception):
    """Retention is deleting the snapshot: a reader must not start on it."""


class ObjectStore(ABC):
    """Where snapshots live. `name` is a snapshot, `file` an object inside it."""

    kind: str
    #: True where an object, once verified, cannot change while a step holds the snapshot's lease:
    #: a folder (writers replace files by rename, under an exclusive flock). A load then reads
    #: what it verified before connecting without hashing it twice. Not an object store: another
    #: writer can replace an object between the two reads, so loads hash it again as it streams.
    stable_while_leased: bool = False

    @abstractmethod
    def location(self, name: str = "") -> str:
        """Where a snapshot is, for people: a path or an s3:// URL, never a credential."""

    @abstractmethod
    def writer(self, name: str, file: str) -> ObjectWriter: ...

    @abstractmethod
    def read(self, name: str, file: str) -> Iterator[bytes]:
        """The object's bytes in chunks of about 1 MiB; a missing object raises FileNotFoundError."""

    @abstractmethod
    def put(self, name: str, file: str, data: bytes) -> None:
        """A small object (the manifest), replaced atomically."""

    @abstractmethod
    def get(self, name: str, file: str) -> bytes | None: ...

    @abstractmethod
    def files(self, name: str) -> dict[str, int]:
        """The snapshot's objects and their sizes, bookkeeping (locks, leases) left out."""

    @abstractmethod
    def delete(self, name: str, files: list[str]) -> None: ...

    @abstractmethod
    def snapshots(self) -> list[str]:
        """Every snapshot name in the store, finished or not."""

    def sync(self, name: str, files: list[str]) -> None:
        """Make written objects durable before the manifest names them (a no-op where commit already is)."""

    @abstractmethod
    def lease(self, name: str, *, exclusive: bool) -> AbstractContextManager[None]:
        """Hold the snapshot while reading or writing it: retention never deletes a held snapshot."""

    @abstractmethod
    def remove_if_unused(self, name: str) -> int | None:
        """Delete the whole snapshot unless a step holds it; the bytes freed, or None when it is in use."""

    def free_bytes(self, name: str) -> int | None:
        """Room left where the snapshot would be written, or None where the store has no such limit."""
        return None
