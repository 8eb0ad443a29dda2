"""Proof that a snapshot is what its manifest claims: every file complete, with its recorded sha256."""

from __future__ import annotations

from pathlib import Path

from .errors import SnapshotCorruptError, SnapshotIncompleteError
from .files import sha256_of
from .manifest import MANIFEST_NAME, Manifest, read_manifest


def verify_snapshot(snapshot_dir: Path) -> Manifest:
    """Check that the manifest exists and every file has the size and sha256 it recorded."""
    if not snapshot_dir.is_dir():
        raise SnapshotIncompleteError(
            f"No snapshot at {snapshot_dir}: materialize prod_snapshot for this partition first."
        )
    try:
        manifest = read_manifest(snapshot_dir)
    except (ValueError, TypeError, KeyError) as exc:
        raise SnapshotCorruptError(
            f"{snapshot_dir / MANIFEST_NAME} cannot be read ({exc.__class__.__name__}). "
            "Re-materialize prod_snapshot for this partition with refresh: true."
        ) from None
    if manifest is None:
        raise SnapshotIncompleteError(
            f"The snapshot at {snapshot_dir} has no {MANIFEST_NAME}: it was never finished. "
            "Re-materialize prod_snapshot for this partition."
        )
    for entry in manifest.tables:
        path = snapshot_dir / entry.file
        if not path.is_file():
            raise SnapshotCorruptError(
                f"Snapshot file {path} for table {entry.key} is missing. "
                "Re-materialize prod_snapshot for this partition with refresh: true."
            )
        digest, size = sha256_of(path)
        if size != entry.bytes or digest != entry.sha256:
            raise SnapshotCorruptError(
                f"Snapshot file {path} for table {entry.key} was changed after capture "
                f"(sha256 {digest[:12]}…, {size} bytes; manifest says {entry.sha256[:12]}…, "
                f"{entry.bytes} bytes). Nothing was loaded. Re-materialize prod_snapshot for this "
                "partition with refresh: true."
            )
    return manifest
