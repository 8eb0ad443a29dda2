"""The target environments (Dev, Staging, QA, and any added in replication.yaml), each a full copy of the day's snapshot."""

import dagster as dg
from pydantic import Field

from ..config import SOURCE, EnvironmentSettings, ReplicationConfig, names_for
from ..engine.load import LoadReport
from ..engine.load.refresh import Policy, Target, refresh_environment
from ..engine.privacy.scrub import SensitiveColumns
from ..engine.storage import store_errors
from ..engine.storage.location import SNAPSHOT_ASSET
from ..executors.steps import STEP_TAGS
from ..failures import explained_failures
from ..metadata import load_metadata
from ..partitions import daily_partitions
from ..resources import MASKING_KEY, SNAPSHOT_STORE, PostgresResource, SnapshotStore
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
        required_resource_keys={resource_key, SNAPSHOT_STORE, prod_key, MASKING_KEY},
        kinds={"postgres"},
        op_tags=STEP_TAGS,
        description=(
            f"The {names.display} database: every replicated table replaced by the day's production "
            f"snapshot (load: {settings.load}), in pg_restore's order (indexes and foreign keys built after COPY), "
            f"verified by row counts and checksums before anything live changes{masked}."
        ),
    )
    def environment_db(context: dg.AssetExecutionContext, config: LoadConfig) -> dg.MaterializeResult:
        target: PostgresResource = getattr(context.resources, resource_key)
        prod: PostgresResource = getattr(context.resources, prod_key)
        store: SnapshotStore = getattr(context.resources, SNAPSHOT_STORE)
        masking_key = getattr(context.resources, MASKING_KEY).key()
        sensitive = SensitiveColumns()
        secrets = [target.password, prod.password, masking_key or ""]
        with explained_failures(f"{names.asset} from {target.label}", secrets, sensitive), store_errors(store.objects):
            snapshot = store.location(context.partition_key, decrypt=True)
            refreshed = refresh_environment(
                Target(environment, target.address, target.get_connection, prod.address, prod.get_connection,
                       names.variables.connection),
                snapshot,
                Policy(masks, settings.subset, settings.lock_policy, settings.personal_data_policy, masking_key,
                       config.verify_checksums, settings.load, settings.jobs, settings.schema_mode, settings.keep),
                keep=store.keep, sensitive=sensitive, masked_columns=masked_columns,
                log=context.log.info, warn=context.log.warning)
            metadata = load_metadata(refreshed.report, refreshed.manifest, snapshot, target.label, refreshed.pruned)
        metadata.update(_policy_metadata(refreshed.report, settings))
        return dg.MaterializeResult(metadata=metadata)

    return environment_db


def _policy_metadata(report: LoadReport, settings: EnvironmentSettings) -> dict:
    return {
        "masked_columns": dg.MetadataValue.json(report.masked_columns),
        # What the rows_and_checksums check compares masked tables with, after this load.
        "loaded_checksums": dg.MetadataValue.json(report.loaded_checksums),
        "unmasked_pii_policy": settings.personal_data_policy,
        "unmasked_personal_columns": dg.MetadataValue.json(report.unmasked_personal_columns),
        "blocking_sessions": settings.blocking_sessions,
        "lock_wait_seconds": dg.MetadataValue.float(report.lock_wait_seconds),
        "sessions_terminated": dg.MetadataValue.json(report.terminated_sessions),
        # What the checks after COMMIT build on: rows written since carry another xmin.
        "load_transaction_id": report.transaction_id,
        "load_transaction_ids": dg.MetadataValue.json(report.table_transactions),
        "load_mode": report.mode,
        "load_mode_reason": report.mode_reason or ("load: in_place" if settings.load == "in_place" else ""),
        "load_jobs": report.jobs,
        "switch_seconds": dg.MetadataValue.float(report.switch_seconds),
        "swap_phase_seconds": dg.MetadataValue.json(report.phase_seconds),
        "repointed": dg.MetadataValue.json(report.repointed),
        "mask_overlaps": dg.MetadataValue.json(report.mask_overlaps),
        # What the rows check expects of each subset table: [kept, in the snapshot].
        "subset_rows": dg.MetadataValue.json(report.subset_rows),
        # schema: how the environment's definitions met production's (docs/schema.md).
        "schema": dg.MetadataValue.json({
            "mode": report.schema_mode, "differences_before_load": report.schema_differences,
            "changes": report.schema_changes, "skipped_tables": report.skipped_tables,
            "skipped_columns": report.skipped_columns, "skipped_grants": report.skipped_grants}),
        # keep: per table [rows kept, production rows they replaced], the tables never replaced, and
        # the rows a table with kept rows held after the load (what the rows check expects).
        "kept_rows": dg.MetadataValue.json({
            "tables": report.kept_rows, "never_replaced": report.kept_tables, "rows_after_load": report.rows_after_load}),
    }


def build_environment_assets(config: ReplicationConfig) -> list[dg.AssetsDefinition]:
    return [build_environment_asset(name, settings, config.masked_columns) for name, settings in config.environments.items()]
