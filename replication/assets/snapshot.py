"""The daily production snapshot asset."""

import time
from datetime import datetime, timezone

import dagster as dg
from pydantic import Field

from ..engine.pg.catalog import TableSize
from ..engine.errors import ReplicationError
from ..engine.snapshot.retention import check_free_space, estimate_from_catalog, estimate_from_manifests
from ..engine.capture.take import take_snapshot
from ..engine.storage import SnapshotLocation, store_errors
from ..engine.storage.location import SNAPSHOT_ASSET
from ..engine.snapshot.reuse import reuse_decision
from ..executors.steps import STEP_TAGS
from ..failures import explained_failures
from ..metadata import snapshot_metadata
from ..partitions import daily_partitions
from ..resources import PostgresResource, SnapshotStore
from ..retries import RETRY_POLICY


class SnapshotConfig(dg.Config):
    include: list[str] | None = Field(
        default=None,
        description="For this run only: tables to copy, as `schema.table`, `table` or globs (`shop.*`). "
        "Unset: `snapshot.include` from replication.yaml.",
    )
    exclude: list[str] | None = Field(
        default=None,
        description="For this run only: tables to leave out, same forms. Unset: `snapshot.exclude` from replication.yaml.",
    )
    refresh: bool = Field(
        default=False, description="Capture again even when this partition's snapshot exists and verifies."
    )
    content_checksums: bool = Field(
        default=True,
        description="Record an order-independent checksum of every table, which the loaders compare after COPY.",
    )


@dg.asset(
    name=SNAPSHOT_ASSET,
    group_name="replication",
    partitions_def=daily_partitions,
    retry_policy=RETRY_POLICY,
    kinds={"postgres", "csv"},
    code_version="1",
    op_tags=STEP_TAGS,
)
def prod_snapshot(
    context: dg.AssetExecutionContext,
    config: SnapshotConfig,
    prod_db: PostgresResource,
    snapshot_store: SnapshotStore,
) -> dg.MaterializeResult:
    """Production tables as CSV files from one consistent point in time, with a manifest of rows, bytes and sha256.

    Captured in one READ ONLY, REPEATABLE READ transaction and stored in a folder or an object
    store, compressed and encrypted as `snapshot:` says; the manifest is written last, so a
    snapshot without one is incomplete and never loaded.
    """
    started = time.monotonic()
    partition = context.partition_key
    snapshot = _location(context, snapshot_store, partition)
    include = snapshot_store.include if config.include is None else config.include
    exclude = snapshot_store.exclude if config.exclude is None else config.exclude
    past = partition < datetime.now(timezone.utc).strftime("%Y-%m-%d")
    with explained_failures(f"{SNAPSHOT_ASSET} {partition} from {prod_db.label}", [prod_db.password]), \
            store_errors(snapshot_store.objects):
        if config.refresh:
            context.log.info("refresh: true, so production is captured again.")
        else:
            decision = reuse_decision(snapshot, include, exclude, need_checksums=config.content_checksums)
            if decision.reusable:
                context.log.info(f"Reusing the verified snapshot at {snapshot} (refresh: false); prod was not read.")
                return dg.MaterializeResult(metadata=snapshot_metadata(
                    decision.manifest, snapshot, True, time.monotonic() - started,
                    snapshot_store.preview, snapshot_store.masked_columns))
            context.log.info(f"Capturing a new snapshot: {decision.reason}.")
            if past:
                _refuse_or_warn_past_partition(context, snapshot_store, partition)
        manifest = _capture(context, prod_db, snapshot_store, snapshot, include, exclude, config.content_checksums)
        seconds = time.monotonic() - started
        context.log.info(
            f"Snapshot {partition}: {len(manifest.tables)} tables, {manifest.total_rows:,} rows, "
            f"{manifest.total_bytes / 1e6:,.1f} MB of CSV stored as {manifest.stored_bytes / 1e6:,.1f} MB in {seconds:.1f} s"
        )
        return dg.MaterializeResult(
            metadata=snapshot_metadata(manifest, snapshot, False, seconds,
                                       snapshot_store.preview, snapshot_store.masked_columns)
        )


def _location(context: dg.AssetExecutionContext, store: SnapshotStore, partition: str) -> SnapshotLocation:
    """The partition's snapshot, with the identity where one is set: capturing needs the public keys
    alone, and the identity only shows the preview of an encrypted snapshot that is reused."""
    try:
        return store.location(partition, decrypt=True)
    except ReplicationError as exc:
        context.log.warning(f"{exc} The preview of an encrypted snapshot is left out.")
        return store.location(partition)


def _capture(context: dg.AssetExecutionContext, prod_db: PostgresResource, store: SnapshotStore,
             snapshot: SnapshotLocation, include: list[str], exclude: list[str], checksums: bool):
    """Capture production holding the snapshot (exclusive lock or lease), after the disk guard allows it."""
    encrypted = f"encrypted to {len(store.encrypt_to)} age recipient(s)" if store.encrypt_to else "not encrypted"
    context.log.info(f"Capturing {prod_db.label} into {snapshot} (compression {store.compression}, {encrypted})")

    def disk_guard(sizes: list[TableSize]) -> None:
        if snapshot.store.free_bytes(snapshot.name) is None:
            return  # an object store: no free space to compare with, so no manifests read for an estimate
        estimate = estimate_from_manifests(store.objects, include, exclude) or estimate_from_catalog(sizes)
        # Objects of an earlier capture of this partition are replaced, so their space comes back.
        reclaimable = sum(snapshot.files().values())
        free = check_free_space(snapshot, estimate, reclaimable)
        context.log.info(f"Disk guard: about {estimate.needed / 1e6:,.1f} MB needed ({estimate.basis}), "
                         f"{free / 1e6:,.1f} MB free in {store.describe()}")

    with snapshot.lease(exclusive=True), prod_db.get_connection() as conn:
        return take_snapshot(conn, snapshot, partition=context.partition_key, include=include, exclude=exclude,
                             source=str(prod_db.address), checksums=checksums, log=context.log.info,
                             before_writing=disk_guard, connect=prod_db.get_connection, jobs=store.jobs,
                             split_bytes=store.split_larger_than)


def _refuse_or_warn_past_partition(context: dg.AssetExecutionContext, store: SnapshotStore, partition: str) -> None:
    """A past day without a retained snapshot can only be captured as production is now: say so, or refuse."""
    if store.backfill_missing == "refuse":
        raise ReplicationError(
            f"No retained snapshot of {partition} in {store.describe()}, and snapshot.backfill_missing is refuse: "
            f"production as it was on {partition} cannot be recovered, so nothing was captured or loaded. "
            "Pick a partition whose snapshot is retained (the newest snapshot.keep captures), or set "
            "backfill_missing: capture in replication.yaml to load today's data under this partition."
        )
    context.log.warning(
        f"Partition {partition} is in the past and has no retained snapshot: production is captured as it "
        f"is now ({datetime.now(timezone.utc).isoformat(timespec='seconds')}), not as it was on {partition}. "
        "The metadata's captured_at says when the data is from; set snapshot.backfill_missing: refuse to "
        "forbid this."
    )
