"""Proof that a snapshot is what its manifest claims: every file complete, with its recorded sha256."""

from __future__ import annotations

from pathlib import Path

from .errors import SnapshotCorruptError, SnapshotIncompleteError
from .files import sha256_of
from .manifest import MANIFEST_NAME, Manifest, TableEntry, read_manifest


def verify_snapshot(snapshot_dir: Path, *, hashes: bool = True) -> Manifest:
    """Check that the manifest exists and every file has the size and sha256 it recorded.

    `hashes=False` checks presence and sizes only, for a reader that hashes each file as it
    streams it (the loader does, see `check_file`): one read of the data instead of two.
    """
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
        if hashes:
            check_file(path, entry, *sha256_of(path), "Nothing was loaded.")
        elif path.stat().st_size != entry.bytes:
            check_file(path, entry, "", path.stat().st_size, "Nothing was loaded.")
    return manifest


def check_file(path: Path, entry: TableEntry, digest: str, size: int, outcome: str) -> None:
    """Raise unless a file's sha256 and size are the ones the manifest recorded."""
    if size != entry.bytes or digest != entry.sha256:
        raise SnapshotCorruptError(
            f"Snapshot file {path} for table {entry.key} was changed after capture "
            f"(sha256 {digest[:12] or 'not computed'}…, {size} bytes; manifest says {entry.sha256[:12]}…, "
            f"{entry.bytes} bytes). {outcome} Re-materialize prod_snapshot for this "
            "partition with refresh: true."
        )
