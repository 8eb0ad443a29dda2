"""Blocking asset checks: the proofs the UI shows next to every snapshot and environment.

The load verifies inside its transaction (that is what makes a bad load roll back); these checks
look again from outside, after COMMIT, so the result is visible per partition in the UI, a
failure stops what is downstream, and damage done after the load (a deleted row, a sequence set
back) is caught on the next run.
"""


import dagster as dg
import psycopg

from .config import EnvironmentSettings, ReplicationConfig
from .engine.audit import compare_with_manifest, masked_value_overlaps, orphaned_rows, sequence_positions
from .engine.catalog import list_tables, select_tables
from .engine.errors import ReplicationError
from .engine.verify import verify_snapshot
from .partitions import daily_partitions
from .resources import SNAPSHOT_STORE, PostgresResource, SnapshotStore, target_resource_key


def _table(columns: list[str], rows: list[dict]) -> dg.MetadataValue:
    schema = dg.TableSchema(columns=[dg.TableColumn(name, "string") for name in columns])
    return dg.MetadataValue.table(records=[dg.TableRecord({k: str(v) for k, v in row.items()}) for row in rows],
                                  schema=schema)


@dg.asset_check(asset="prod_snapshot", blocking=True, partitions_def=daily_partitions,
                description="Every snapshot file has the size and sha256 its manifest recorded at capture.")
def snapshot_files_match_manifest(context: dg.AssetCheckExecutionContext, snapshot_store: SnapshotStore):
    folder = snapshot_store.path_for(context.partition_key)
    try:
        manifest = verify_snapshot(folder)
    except ReplicationError as exc:
        return dg.AssetCheckResult(passed=False, description=str(exc), metadata={"snapshot_path": str(folder)})
    return dg.AssetCheckResult(passed=True, metadata={
        "snapshot_path": str(folder), "files": len(manifest.tables), "total_bytes": manifest.total_bytes})


@dg.asset_check(asset="prod_snapshot", blocking=True, partitions_def=daily_partitions,
                description="Every table the selection matched at capture is in the snapshot, with its file.")
def every_selected_table_captured(context: dg.AssetCheckExecutionContext, snapshot_store: SnapshotStore,
                                  prod_db: PostgresResource):
    folder = snapshot_store.path_for(context.partition_key)
    try:
        manifest = verify_snapshot(folder)
    except ReplicationError as exc:
        return dg.AssetCheckResult(passed=False, description=str(exc))
    captured = {t.key for t in manifest.tables if (folder / t.file).is_file()}
    missing = sorted(set(manifest.selected) - captured)
    metadata = {"selected": len(manifest.selected), "captured": len(captured), "missing": dg.MetadataValue.json(missing)}
    # Tables production has gained since the capture do not fail a restore of that day; shown only.
    try:
        with prod_db.get_connection() as conn, conn.transaction():
            now = {t.key for t in select_tables(list_tables(conn), manifest.include, manifest.exclude)}
        metadata["new_in_production_since_capture"] = dg.MetadataValue.json(sorted(now - set(manifest.selected)))
    except (psycopg.Error, ReplicationError):
        context.log.info("Production did not answer; compared with the selection recorded at capture only.")
    return dg.AssetCheckResult(
        passed=bool(manifest.selected) and not missing,
        description=(f"Selected but not in the snapshot: {', '.join(missing)}. Materialize prod_snapshot with "
                     "refresh: true." if missing else None if manifest.selected else
                     "The manifest records no selection (taken by an older version): refresh the snapshot."),
        metadata=metadata,
    )


def _verdict(problems: list[str], lead: str, advice: str, name: str, columns: list[str], rows: list[dict]):
    """Pass when nothing is wrong; otherwise say what, where and what to do. The table always shows."""
    return dg.AssetCheckResult(
        passed=not problems,
        description=f"{lead}: {', '.join(problems)}. {advice}" if problems else None,
        metadata={name: _table(columns, rows)},
    )


def _loaded_checksums(context: dg.AssetCheckExecutionContext, asset: str) -> dict[str, str]:
    """Checksums of masked tables as the partition's last load left them (from its materialization)."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[context.partition_key]), limit=1
    ).records
    if not records:
        return {}
    value = records[0].asset_materialization.metadata.get("masked_table_checksums")
    return dict(value.value) if value is not None else {}


def build_environment_checks(environment: str, settings: EnvironmentSettings) -> list[dg.AssetChecksDefinition]:
    asset = f"{environment}_db"
    resource_key = target_resource_key(environment)
    common = {"asset": asset, "blocking": True, "partitions_def": daily_partitions,
              "required_resource_keys": {resource_key, SNAPSHOT_STORE}}

    def _manifest_and_target(context):
        store: SnapshotStore = getattr(context.resources, SNAPSHOT_STORE)
        return verify_snapshot(store.path_for(context.partition_key)), getattr(context.resources, resource_key)

    def _audit(context, audit):
        """Run one read-only audit of the environment against the partition's snapshot."""
        manifest, target = _manifest_and_target(context)
        with target.get_connection() as conn:
            return audit(conn, manifest)

    @dg.asset_check(name="rows_and_checksums_match_snapshot", **common,
                    description=f"Every table in {environment} has the snapshot's row count and content checksum.")
    def rows_and_checksums(context: dg.AssetCheckExecutionContext):
        found = _audit(context, lambda conn, manifest: compare_with_manifest(conn, manifest, _loaded_checksums(context, asset)))
        problems = [f"{f.table} ({f.rows:,} rows, snapshot {f.expected_rows:,}, checksum "
                    f"{'matches' if f.checksum_matches else 'differs'})" for f in found if not f.ok]
        return _verdict(problems, "Differs from the snapshot", "Run the partition again.", "tables",
                        ["table", "rows", "snapshot_rows", "checksum"],
                        [{"table": f.table, "rows": f.rows, "snapshot_rows": f.expected_rows,
                          "checksum": "matches" if f.checksum_matches else "DIFFERS"} for f in found])

    @dg.asset_check(name="sequences_at_or_above_loaded_max", **common,
                    description="Every serial and identity sequence will hand out a value above the loaded maximum.")
    def sequences(context: dg.AssetCheckExecutionContext):
        found = _audit(context, lambda conn, manifest: sequence_positions(conn, [t.ref for t in manifest.tables]))
        problems = [f"{f.sequence} would give {f.next_value} but {f.table}.{f.column} holds {f.loaded_max}"
                    for f in found if not f.ok]
        return _verdict(problems, "Behind the data", "An insert would collide; run the partition again to reset them.",
                        "sequences", ["sequence", "next_value", "loaded_max"],
                        [{"sequence": f.sequence, "next_value": f.next_value, "loaded_max": f.loaded_max} for f in found])

    @dg.asset_check(name="no_orphaned_foreign_keys", **common,
                    description="No row's foreign key points at a row that does not exist.")
    def orphans(context: dg.AssetCheckExecutionContext):
        found = _audit(context, lambda conn, manifest: orphaned_rows(conn, [t.ref for t in manifest.tables]))
        problems = [f"{f.orphans:,} in {f.table} ({f.constraint} to {f.references})" for f in found if f.orphans]
        return _verdict(problems, "Orphaned rows", "Run the partition again; validate the foreign key if it is NOT VALID.",
                        "foreign_keys", ["constraint", "table", "references", "orphans"],
                        [{"constraint": f.constraint, "table": f.table, "references": f.references, "orphans": f.orphans}
                         for f in found])

    checks = [rows_and_checksums, sequences, orphans]
    if settings.mask:
        checks.append(_masked_values_check(environment, settings, common, _manifest_and_target))
    return checks


def _masked_values_check(environment: str, settings: EnvironmentSettings, common: dict, manifest_and_target):
    masked = {table: list(columns) for table, columns in settings.rules().items()}

    @dg.asset_check(name="masked_values_differ_from_production", **common,
                    description=f"No value of a masked column in {environment} equals a production value of that "
                                "column (compared through hashes, in bounded memory).")
    def masked_values(context: dg.AssetCheckExecutionContext):
        manifest, target = manifest_and_target(context)
        store: SnapshotStore = getattr(context.resources, SNAPSHOT_STORE)
        with target.get_connection() as conn:
            found = masked_value_overlaps(conn, store.path_for(context.partition_key), manifest, masked)
        problems = [f"{f.column} ({f.equal:,} of {f.compared:,} values)" for f in found if f.equal]
        return _verdict(problems, "Production values still present", "Choose a strategy that changes every value.",
                        "columns", ["column", "rule", "production_values", "still_present"],
                        [{"column": f.column, "rule": settings.mask[f.column].describe(), "production_values": f.compared,
                          "still_present": f.equal} for f in found])

    return masked_values


def build_checks(config: ReplicationConfig) -> list[dg.AssetChecksDefinition]:
    checks = [snapshot_files_match_manifest, every_selected_table_captured]
    for name, settings in config.environments.items():
        checks += build_environment_checks(name, settings)
    return checks
