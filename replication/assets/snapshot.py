"""The daily production snapshot asset."""


import time
from pathlib import Path

import dagster as dg
from pydantic import Field

from ..engine.errors import ReplicationError
from ..engine.manifest import Manifest
from ..engine.snapshot import take_snapshot
from ..engine.verify import verify_snapshot
from ..failures import explained_failures
from ..metadata import snapshot_metadata
from ..partitions import daily_partitions
from ..resources import PostgresResource, SnapshotStore
from ..retries import RETRY_POLICY


class SnapshotConfig(dg.Config):
    include: list[str] = Field(
        default_factory=list,
        description="Tables to copy, as `schema.table`, `table` or glob patterns (`shop.*`). Empty: every table.",
    )
    exclude: list[str] = Field(default_factory=list, description="Tables to leave out, same forms as include.")
    refresh: bool = Field(
        default=False, description="Capture again even when this partition's snapshot exists and verifies."
    )
    content_checksums: bool = Field(
        default=True,
        description="Record an order-independent checksum of every table, which the loaders compare after COPY.",
    )


def build_prod_snapshot(retry_policy: dg.RetryPolicy | None = RETRY_POLICY) -> dg.AssetsDefinition:
    """Build the asset; tests pass retry_policy=None to see a transient failure at once."""

    @dg.asset(
        name="prod_snapshot",
        group_name="replication",
        partitions_def=daily_partitions,
        retry_policy=retry_policy,
        kinds={"postgres", "csv"},
        code_version="1",
    )
    def prod_snapshot(
        context: dg.AssetExecutionContext,
        config: SnapshotConfig,
        prod_db: PostgresResource,
        snapshot_store: SnapshotStore,
    ) -> dg.MaterializeResult:
        """Production tables as CSV files from one consistent point in time, with a manifest of rows, bytes and sha256.

        Captured in one READ ONLY, REPEATABLE READ transaction; the manifest is written last, so a
        folder without one is incomplete and never loaded.
        """
        started = time.monotonic()
        partition = context.partition_key
        snapshot_dir = snapshot_store.path_for(partition)
        with explained_failures(f"prod_snapshot {partition} from {prod_db.label}", [prod_db.password]):
            reusable = None if config.refresh else _reusable_snapshot(context, snapshot_dir, config)
            if reusable is not None:
                context.log.info(f"Reusing the verified snapshot at {snapshot_dir} (refresh: false); prod was not read.")
                return dg.MaterializeResult(metadata=snapshot_metadata(reusable, snapshot_dir, True, time.monotonic() - started))
            context.log.info(f"Capturing {prod_db.label} into {snapshot_dir}")
            with prod_db.get_connection() as conn:
                manifest = take_snapshot(
                    conn,
                    snapshot_dir,
                    partition=partition,
                    include=config.include,
                    exclude=config.exclude,
                    source=str(prod_db.address),
                    checksums=config.content_checksums,
                    log=context.log.info,
                )
        seconds = time.monotonic() - started
        context.log.info(
            f"Snapshot {partition}: {len(manifest.tables)} tables, {manifest.total_rows:,} rows, "
            f"{manifest.total_bytes / 1e6:,.1f} MB in {seconds:.1f} s"
        )
        return dg.MaterializeResult(metadata=snapshot_metadata(manifest, snapshot_dir, False, seconds))

    return prod_snapshot


def _reusable_snapshot(context: dg.AssetExecutionContext, snapshot_dir: Path, config: SnapshotConfig) -> "Manifest | None":
    """The existing snapshot if it is complete, intact and was taken with the same table selection."""
    if not (snapshot_dir / "manifest.json").exists():
        return None
    try:
        manifest = verify_snapshot(snapshot_dir)
    except ReplicationError as exc:
        context.log.warning(f"Not reusing the existing snapshot: {exc}")
        return None
    if manifest.include != list(config.include) or manifest.exclude != list(config.exclude):
        context.log.info("Not reusing the existing snapshot: it was taken with another table selection.")
        return None
    if config.content_checksums and any(not t.content_checksum for t in manifest.tables):
        context.log.info("Not reusing the existing snapshot: it has no content checksums.")
        return None
    return manifest


prod_snapshot = build_prod_snapshot()
