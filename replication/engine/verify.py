"""Proof that a copy is what it claims to be: file hashes and order-independent table checksums."""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql

from .catalog import TableRef, is_partitioned
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


def content_checksum(conn: psycopg.Connection, table: TableRef, columns: list[str]) -> tuple[int, str]:
    """Row count and an order-independent checksum of the given columns of a table.

    Each row's text is hashed and the 64-bit hashes are summed (not XORed, so duplicate rows still
    count). The text of a value depends on session settings, which `session.PINNED_SETTINGS` fixes
    on every connection, so prod and a target agree exactly when their data does. A plain table is
    read with ONLY, as the snapshot reads it: inheritance children's rows are their own tables'.
    """
    row_expr = sql.SQL("ROW({})::text").format(sql.SQL(", ").join(sql.Identifier(c) for c in columns))
    query = sql.SQL(
        "SELECT count(*), coalesce(sum(('x' || left(md5({row}), 16))::bit(64)::bigint::numeric), 0)::text "
        "FROM {only}{table}"
    ).format(row=row_expr, only=sql.SQL("" if is_partitioned(conn, table) else "ONLY "), table=table.ident)
    rows, checksum = conn.execute(query).fetchone()
    return rows, f"{rows}:{checksum}"
