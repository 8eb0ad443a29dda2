"""The target environments (Dev, Staging, QA, and any added in replication.yaml), each a full copy of the day's snapshot."""

import os

import dagster as dg
import psycopg
from pydantic import Field

from ..config import SOURCE, EnvironmentSettings, ReplicationConfig, names_for
from ..engine.errors import ReplicationError
from ..engine.load.guard import refuse_production_address, refuse_same_database, server_identity
from ..engine.snapshot.manifest import Manifest
from ..engine.privacy.mask import mask_problems, stale_mask_error, unmasked_personal_columns
from ..engine.privacy.scrub import SensitiveColumns
from ..engine.load import LoadReport, load_snapshot
from ..engine.snapshot.retention import PruneReport, prune
from ..engine.storage import store_errors
from ..engine.storage.location import SNAPSHOT_ASSET
from ..engine.snapshot.verify import verify_snapshot
from ..executors.steps import STEP_TAGS
from ..failures import explained_failures
from ..metadata import load_metadata
from ..partitions import daily_partitions
from ..resources import SNAPSHOT_STORE, PostgresResource, SnapshotStore
from ..retries import RETRY_POLICY


class LoadConfig(dg.Config):
    verify_checksums: bool = Field(
        default=True,
        description="Compare every loaded table's checksum with production before COMMIT.",
    )


def build_environment_asset(
    environment: str, settings: EnvironmentSettings, masked_columns: list[str] | tuple[str, ...] = ()
) -> dg.AssetsDefinition:
    """`{env}_db`, loading the snapshot through the `{env}_db_target` resource.

    `masked_columns` (schema.table.column, masked by any environment) are never quoted in errors.
    """
    names = names_for(environment)
    resource_key, prod_key = names.resource, names_for(SOURCE).resource
    masks = settings.rules()
    masked = f", with {len(settings.mask)} column(s) masked" if settings.mask else ", an exact copy"

    @dg.asset(
        name=names.asset,
        group_name="replication",
        partitions_def=daily_partitions,
        deps=[SNAPSHOT_ASSET],
        retry_policy=RETRY_POLICY,
        required_resource_keys={resource_key, SNAPSHOT_STORE, prod_key},
        kinds={"postgres"},
        op_tags=STEP_TAGS,
        description=(
            f"The {names.display} database: every replicated table replaced by the day's production "
            "snapshot in one transaction, in pg_restore's order (indexes and foreign keys rebuilt after COPY), "
            f"verified by row counts and checksums before COMMIT{masked}."
        ),
    )
    def environment_db(context: dg.AssetExecutionContext, config: LoadConfig) -> dg.MaterializeResult:
        target: PostgresResource = getattr(context.resources, resource_key)
        prod: PostgresResource = getattr(context.resources, prod_key)
        store: SnapshotStore = getattr(context.resources, SNAPSHOT_STORE)
        masking_key = os.environ.get("MASKING_KEY", "")
        sensitive = SensitiveColumns()
        with explained_failures(f"{names.asset} from {target.label}", [target.password, prod.password, masking_key],
                                sensitive), store_errors(store.objects):
            refuse_production_address(environment, target.address, prod.address, names.variables.connection)
            snapshot_dir = store.location(context.partition_key, decrypt=True)
            if not snapshot_dir.files():
                verify_snapshot(snapshot_dir)  # says which partition to materialize first
            # Shared: pruning by another run's step cannot delete the snapshot while it loads.
            with snapshot_dir.lease(exclusive=False):
                # Verify before connecting: a damaged snapshot must not cost the target anything.
                manifest = verify_snapshot(snapshot_dir)
                snapshot_dir.require_identity(manifest.tables)
                sensitive.learn(manifest, masked_columns)
                context.log.info(
                    f"Snapshot {snapshot_dir} verified ({len(manifest.tables)} objects, sha256); loading {target.label}"
                )
                uncovered = _check_policies(context, environment, settings, manifest)
                with target.get_connection() as conn:
                    refuse_same_database(environment, target.address, server_identity(conn), _identity(context, prod),
                                         names.variables.connection)
                    report = load_snapshot(conn, snapshot_dir, manifest, environment=environment,
                                           verify_checksums=config.verify_checksums, locks=settings.lock_policy,
                                           masks=masks, masking_key=masking_key or None, subset=settings.subset,
                                           log=context.log.info)
            context.log.info(
                f"{environment}: {len(report.tables)} tables, {report.total_rows:,} rows committed in "
                f"{report.seconds:.1f} s ({report.indexes_rebuilt} indexes rebuilt, {report.foreign_keys_readded} "
                "foreign keys re-validated)"
            )
            pruned = _prune(context, store, snapshot_dir.name)
            metadata = load_metadata(report, manifest, snapshot_dir, target.label, pruned)
        metadata.update(_policy_metadata(report, settings, uncovered))
        return dg.MaterializeResult(metadata=metadata)

    return environment_db


def _policy_metadata(report: LoadReport, settings: EnvironmentSettings, uncovered: dict[str, str]) -> dict:
    return {
        "masked_columns": dg.MetadataValue.json(report.masked_columns),
        # What the rows_and_checksums check compares masked tables with, after this load.
        "loaded_checksums": dg.MetadataValue.json(report.loaded_checksums),
        "unmasked_pii_policy": settings.personal_data_policy,
        "unmasked_personal_columns": dg.MetadataValue.json(uncovered),
        "blocking_sessions": settings.blocking_sessions,
        "lock_wait_seconds": dg.MetadataValue.float(report.lock_wait_seconds),
        "sessions_terminated": dg.MetadataValue.json(report.terminated_sessions),
        # What the checks after COMMIT build on: rows written since carry another xmin.
        "load_transaction_id": report.transaction_id,
        "mask_overlaps": dg.MetadataValue.json(report.mask_overlaps),
        # What the rows check expects of each subset table: [kept, in the snapshot].
        "subset_rows": dg.MetadataValue.json(report.subset_rows),
    }


def _check_policies(
    context: dg.AssetExecutionContext, environment: str, settings: EnvironmentSettings, manifest: Manifest
) -> dict[str, str]:
    """Masks that production's schema has outgrown fail here; then personal-looking columns without
    a rule are refused (error), reported (warn) or accepted (allow)."""
    # The stale masks first: a mistyped key would otherwise show up as an uncovered column below.
    problems = mask_problems(environment, settings.rules(), manifest)
    if problems:
        raise stale_mask_error(environment, problems, manifest)
    policy = settings.personal_data_policy
    uncovered = dict(unmasked_personal_columns(manifest, settings.rules())) if policy != "allow" else {}
    if uncovered and policy == "error":
        rules = "\n".join(f"      {column}: {rule}" for column, rule in uncovered.items())
        raise ReplicationError(
            f"{environment}: these columns look personal and have no masking rule, and unmasked_pii is error, "
            f"so nothing was written. Add rules under environments.{environment}.mask in replication.yaml, "
            f"for example:\n{rules}\nor set unmasked_pii: warn (or allow) for {environment} if they are not personal."
        )
    if uncovered:
        context.log.warning(f"{environment}: loading unmasked columns that look personal: {', '.join(uncovered)} "
                            "(unmasked_pii: warn)")
    return uncovered


def _identity(context: dg.AssetExecutionContext, prod: PostgresResource):
    """Production's server identity, or None when production cannot be reached from here."""
    try:
        with prod.get_connection() as conn:
            return server_identity(conn)
    except psycopg.OperationalError:
        context.log.warning(f"Production {prod.label} did not answer, so only its address was compared with the target's.")
        return None


def _prune(context: dg.AssetExecutionContext, store: SnapshotStore, loaded: str) -> PruneReport:
    """Retention after a committed load; a failure here must not fail a load that succeeded."""
    try:
        pruned = prune(store.objects, store.keep, protect=(loaded,))
    except Exception as exc:  # noqa: BLE001 - OSError on a disk, botocore's errors on a store
        context.log.warning(f"Could not prune old snapshots in {store.describe()}: {exc.__class__.__name__}: {exc}")
        return PruneReport()
    if pruned.deleted:
        context.log.info(f"Retention (snapshot.keep: {store.keep}): deleted {', '.join(pruned.deleted)}, "
                         f"{pruned.freed_bytes / 1e6:,.1f} MB freed; {len(pruned.kept)} kept")
    if pruned.in_use:
        context.log.info(f"Retention: kept {', '.join(pruned.in_use)} for now, another step is using it")
    return pruned


def build_environment_assets(config: ReplicationConfig) -> list[dg.AssetsDefinition]:
    return [build_environment_asset(name, settings, config.masked_columns) for name, settings in config.environments.items()]
