"""Snapshot stores (a folder, an S3-compatible object store) and the codecs stacked on their streams."""

from __future__ import annotations

from pathlib import Path

from .base import ObjectStore, ObjectWriter, SnapshotBeingDeleted, SnapshotInUse, StoredObject
from .codec import DEFAULT_LEVEL, IDENTITY_VARIABLE, PLAIN, Encoding, parse_identities, \
    parse_recipients
from .folder import FolderStore, folder_bytes, folder_lock
from .location import FOLDER_PREFIX, MANIFEST_NAME, SnapshotLocation, snapshot_name, store_errors


def as_location(snapshot: "SnapshotLocation | Path | str") -> SnapshotLocation:
    """A location as it is, or a folder path read as a plain snapshot folder (tests and scripts pass paths)."""
    return snapshot if isinstance(snapshot, SnapshotLocation) else SnapshotLocation.folder(snapshot)


__all__ = ["DEFAULT_LEVEL", "FOLDER_PREFIX", "IDENTITY_VARIABLE", "MANIFEST_NAME", "PLAIN",
           "Encoding", "FolderStore", "ObjectStore", "ObjectWriter", "SnapshotBeingDeleted", "SnapshotInUse",
           "SnapshotLocation", "StoredObject", "as_location", "folder_bytes", "folder_lock", "parse_identities",
           "parse_recipients", "snapshot_name", "store_errors"]
