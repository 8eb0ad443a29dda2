"""Proof that a snapshot is what its manifest claims: every object present, with its recorded size and sha256."""

from __future__ import annotations

from pathlib import Path

from ..errors import SnapshotCorruptError, SnapshotIncompleteError
from .manifest import Manifest, read_manifest
from ..storage import MANIFEST_NAME, SnapshotLocation, as_location
from ..storage.location import REFRESH


def verify_snapshot(snapshot: SnapshotLocation | Path, *, deep: bool = True) -> Manifest:
    """The manifest, once every object it names exists with its recorded size.

    `deep` also reads every object through sha256 (what a load does before it connects); without
    it, only sizes are compared, which is what the checks need after a load verified the bytes.
    """
    location = as_location(snapshot)
    try:
        manifest = read_manifest(location)
    except (ValueError, TypeError, KeyError) as exc:
        raise SnapshotCorruptError(
            f"{location.url}/{MANIFEST_NAME} cannot be read ({exc.__class__.__name__}). {REFRESH}"
        ) from None
    files = location.files()
    if manifest is None:
        if not files:
            raise SnapshotIncompleteError(
                f"No snapshot at {location.url}: materialize prod_snapshot for this partition first."
            )
        raise SnapshotIncompleteError(
            f"The snapshot at {location.url} has no {MANIFEST_NAME}: it was never finished. "
            "Re-materialize prod_snapshot for this partition."
        )
    for entry in manifest.objects:
        if entry.file not in files:
            raise SnapshotCorruptError(
                f"Snapshot object {location.url}/{entry.file} for table {entry.key} is missing. {REFRESH}"
            )
        if files[entry.file] != entry.stored_bytes:
            raise SnapshotCorruptError(
                f"Snapshot object {location.url}/{entry.file} for table {entry.key} was changed after capture "
                f"({files[entry.file]} bytes; manifest says {entry.stored_bytes} bytes). Nothing was loaded from "
                f"it. {REFRESH}"
            )
    if deep:
        for entry in manifest.objects:
            for _ in location.stored_chunks(entry):
                pass
        location.verified = True
    return manifest
