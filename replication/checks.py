"""Asset checks: the proofs the UI shows next to every snapshot and environment (an environment's
block what is downstream of it; the snapshot's do not, see build_snapshot_checks).

The load verifies inside its transaction (that is what makes a bad load roll back); these checks
look again from outside, after COMMIT, so the result is visible per partition in the UI, a
failure stops what is downstream, and damage done after the load (a deleted row, a sequence set
back) is caught on the next run. They do not repeat the load's work: the snapshot's objects were
hashed by the capture and by every load, so the snapshot check compares sizes; a table whose rows
all still carry the load's transaction id (xmin) is the table the load verified, so the
environment checks read xmin instead of hashing every value again.

Each asset's checks run together in one step (a multi-asset check): one process or container per
asset instead of one per check, which matters under docker_executor.
"""

from dataclasses import dataclass, field

import dagster as dg
import psycopg

from .config import EnvironmentSettings, ReplicationConfig, names_for
from .engine.verify.audit import MaskAudit, compare_with_manifest, masked_value_overlaps, orphaned_rows, sequence_positions, \
    subset_closure, unchanged_since_load
from .engine.pg.catalog import list_tables, select_tables
from .engine.errors import ReplicationError
from .engine.load.keep import KEEP_ALL
from .engine.schema.definitions import read_definitions
from .engine.schema.drift import compare
from .engine.schema.reconcile import definitions_of, loaded_view
from .engine.snapshot.manifest import Manifest
from .engine.privacy.mask import mask_problems
from .engine.privacy.scrub import SensitiveColumns
from .engine.storage import store_errors
from .engine.storage.location import SNAPSHOT_ASSET
from .failures import explained_failures
from .engine.snapshot.verify import verify_snapshot
from .executors.steps import STEP_TAGS
from .partitions import daily_partitions
from .resources import SNAPSHOT_STORE, PostgresResource, SnapshotStore

SNAPSHOT_CHECKS = {
    "snapshot_files_match_manifest": "Every snapshot file has the size and sha256 its manifest recorded at capture.",
    "every_selected_table_captured": "Every table the selection matched at capture is in the snapshot, with its file.",
}
ENVIRONMENT_CHECKS = {
    "rows_and_checksums_match_snapshot": "Every table has the snapshot's row count and content checksum "
                                         "(a masked or subset table: the rows and checksum its load left): compared by the load "
                                         "before COMMIT, and every row still the one it wrote (xmin).",
    "sequences_at_or_above_loaded_max": "Every serial and identity sequence will hand out a value above the loaded maximum.",
    "no_orphaned_foreign_keys": "No row's foreign key points at a row that does not exist.",
}
# Not blocking: a mask that production's schema has outgrown fails only the environment it
# belongs to, in that environment's step; the others, downstream of the same snapshot, still load.
MASK_RULES_CHECK = ("mask_rules_match_snapshot",
                    "Every column the environments' mask: sections name is in the snapshot, with a type its rule can produce.")
SUBSET_CHECK = ("subset_closed_under_foreign_keys",
                "Every key a kept row references is held by a kept row of the referenced table: the subset's "
                "closure derived again from the environment's rows, one anti-join per foreign key.")
# Not blocking: drift is what a mode other than production lets lag on purpose; shown, never a stop.
DRIFT_CHECK = ("schema_matches_production",
               "Every replicated table has production's tables, columns, types, indexes, constraints, partitions and "
               "enum values, as the snapshot recorded them (pg_dump and the catalog, at capture).")
MASKED_CHECK = ("masked_values_differ_from_production",
                "No value of a masked column equals a production value of that column (counted by the load "
                "beside production's staged values; read again from the snapshot if the table changed since).")


def _specs(asset: str, checks: dict[str, str], blocking: bool = True) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(name, asset=asset, blocking=blocking, partitions_def=daily_partitions, description=text)
            for name, text in checks.items()]


def _table(columns: list[str], rows: list[dict]) -> dg.MetadataValue:
    schema = dg.TableSchema(columns=[dg.TableColumn(name, "string") for name in columns])
    return dg.MetadataValue.table(records=[dg.TableRecord({k: str(v) for k, v in row.items()}) for row in rows],
                                  schema=schema)


def _verdict(asset: str, check: str, problems: list[str], lead: str, advice: str, name: str, columns: list[str],
             rows: list[dict]) -> dg.AssetCheckResult:
    """Pass when nothing is wrong; otherwise say what, where and what to do. The table always shows."""
    return dg.AssetCheckResult(
        asset_key=asset, check_name=check, passed=not problems,
        description=f"{lead}: {', '.join(problems)}. {advice}" if problems else None,
        metadata={name: _table(columns, rows)},
    )


def build_snapshot_checks(config: ReplicationConfig) -> dg.AssetChecksDefinition:
    """One step for every check of prod_snapshot; the mask check where an environment masks columns."""
    rules = {name: env.rules() for name, env in config.environments.items() if env.mask}
    # Not blocking: every load reads each object through sha256 before it connects, which proves
    # more than these checks; made blocking, they only put one more step between capture and loads.
    specs = _specs(SNAPSHOT_ASSET, SNAPSHOT_CHECKS, blocking=False)
    if rules:
        specs += _specs(SNAPSHOT_ASSET, dict([MASK_RULES_CHECK]), blocking=False)

    @dg.multi_asset_check(specs=specs, name="prod_snapshot_checks", op_tags=STEP_TAGS)
    def prod_snapshot_checks(context: dg.AssetCheckExecutionContext, snapshot_store: SnapshotStore,
                             prod_db: PostgresResource):
        snapshot = snapshot_store.location(context.partition_key)
        try:
            with store_errors(snapshot.store):
                # Sizes only: the capture hashed every object as it wrote it, and every load hashes
                # what it reads before it connects; reading the snapshot again here proves nothing more.
                manifest = verify_snapshot(snapshot, deep=False)
        except ReplicationError as exc:
            for spec in specs:
                yield dg.AssetCheckResult(asset_key=SNAPSHOT_ASSET, check_name=spec.name, passed=False,
                                          description=str(exc), metadata={"snapshot_path": snapshot.url})
            return
        yield dg.AssetCheckResult(asset_key=SNAPSHOT_ASSET, check_name="snapshot_files_match_manifest", passed=True,
                                  metadata={"snapshot_path": snapshot.url, "files": len(manifest.tables),
                                            "total_bytes": manifest.total_bytes, "stored_bytes": manifest.stored_bytes})
        yield _selection_result(context, snapshot, manifest, prod_db)
        if rules:
            yield _mask_rules_result(manifest, rules)

    return prod_snapshot_checks


def _mask_rules_result(manifest: Manifest, rules: dict[str, dict]) -> dg.AssetCheckResult:
    problems = {name: mask_problems(name, env_rules, manifest) for name, env_rules in rules.items()}
    stale = [p for found in problems.values() for p in found]
    return dg.AssetCheckResult(
        asset_key=SNAPSHOT_ASSET, check_name=MASK_RULES_CHECK[0], passed=not stale,
        description=(f"The masks of {', '.join(n for n, found in problems.items() if found)} name columns this snapshot "
                     f"does not hold: {'; '.join(stale)}. Those environments fail until replication.yaml is fixed; "
                     "the others load." if stale else None),
        metadata={"environments": _table(["environment", "masked_columns", "problems"],
                                         [{"environment": n, "masked_columns": sum(len(c) for c in rules[n].values()),
                                           "problems": len(found)} for n, found in problems.items()])},
    )


def _selection_result(context, snapshot, manifest: Manifest, prod_db: PostgresResource) -> dg.AssetCheckResult:
    present = snapshot.files()
    captured = {t.key for t in manifest.tables if all(part.file in present for part in t.objects)}
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
        asset_key=SNAPSHOT_ASSET, check_name="every_selected_table_captured",
        passed=bool(manifest.selected) and not missing,
        description=(f"Selected but not in the snapshot: {', '.join(missing)}. Materialize prod_snapshot with "
                     "refresh: true." if missing else None if manifest.selected else
                     "The manifest records no selection (taken by an older version): refresh the snapshot."),
        metadata=metadata,
    )


@dataclass(frozen=True)
class LastLoad:
    """What the partition's last load recorded (its materialization): the checks build on it."""

    transaction_id: str = ""
    checksums_verified: bool = False
    # A swap's: schema.table -> the transaction that wrote it (an in-place load has one for all).
    transaction_ids: dict = field(default_factory=dict)
    loaded_checksums: dict = field(default_factory=dict)
    mask_overlaps: dict = field(default_factory=dict)
    subset_rows: dict = field(default_factory=dict)  # schema.table -> [kept, in the snapshot]
    rows_after_load: dict = field(default_factory=dict)  # tables with rows of their own kept (keep:)

    @property
    def expected_rows(self) -> dict[str, int]:
        return {**{table: kept for table, (kept, _) in self.subset_rows.items()}, **self.rows_after_load}


def _last_load(context: dg.AssetCheckExecutionContext, asset: str) -> LastLoad:
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[context.partition_key]), limit=1
    ).records
    if not records:
        return LastLoad()
    metadata = records[0].asset_materialization.metadata

    def value(key: str, default):
        found = metadata.get(key)
        return found.value if found is not None else default

    # Loads before subsets recorded masked tables' checksums under their old name.
    checksums = value("loaded_checksums", None) or value("masked_table_checksums", {})
    return LastLoad(str(value("load_transaction_id", "")), bool(value("checksums_verified", False)),
                    dict(value("load_transaction_ids", {})), dict(checksums), dict(value("mask_overlaps", {})),
                    dict(value("subset_rows", {})), dict(value("kept_rows", {}).get("rows_after_load", {})))


def build_environment_checks(environment: str, settings: EnvironmentSettings,
                             masked_columns: list[str] | tuple[str, ...] = ()) -> dg.AssetChecksDefinition:
    """One step that runs every check of `{environment}_db` against the partition's snapshot."""
    names = names_for(environment)
    asset, resource_key = names.asset, names.resource
    checks = dict(ENVIRONMENT_CHECKS)
    if settings.mask:
        checks[MASKED_CHECK[0]] = MASKED_CHECK[1]
    if settings.subset:
        checks[SUBSET_CHECK[0]] = SUBSET_CHECK[1]
    masked = {table: list(columns) for table, columns in settings.rules().items()}

    specs = _specs(asset, checks) + _specs(asset, dict([DRIFT_CHECK]), blocking=False)

    @dg.multi_asset_check(specs=specs, name=names.checks,
                          required_resource_keys={resource_key, SNAPSHOT_STORE}, op_tags=STEP_TAGS)
    def environment_checks(context: dg.AssetCheckExecutionContext):
        store: SnapshotStore = getattr(context.resources, SNAPSHOT_STORE)
        target: PostgresResource = getattr(context.resources, resource_key)
        sensitive = SensitiveColumns()
        # As the load does: a database error is a retry or a failure that says what to fix, values hidden.
        with explained_failures(f"{asset} checks on {target.label}", [target.password], sensitive), \
                store_errors(store.objects):
            snapshot = store.location(context.partition_key)
            manifest = verify_snapshot(snapshot, deep=False)
            sensitive.learn(manifest, masked_columns)
            # The identity only if production's values must be read from the snapshot again.
            decoding = lambda: store.location(context.partition_key, decrypt=True)  # noqa: E731
            yield from _environment_results(context, asset, settings, target, manifest, masked, decoding)

    return environment_checks


def _environment_results(context, asset: str, settings: EnvironmentSettings, target: PostgresResource,
                         manifest: Manifest, masked: dict[str, list[str]], decoding):
    """Every check of one environment against the snapshot it was loaded from."""
    last = _last_load(context, asset)
    # The load compared every checksum before COMMIT; if no row has been written since, that holds
    # now, and reading xmin proves it without hashing every value again.
    written_by = last.transaction_ids or last.transaction_id
    proven_since_load = bool(written_by) and last.checksums_verified
    unchanged: set = set()
    with target.get_connection() as conn:
        yield drift_result(asset, conn, manifest)
        if settings.schema_mode != "strict" or settings.keep:
            # Compared as the load compared: the tables and columns it wrote.
            manifest = loaded_view(conn, manifest, {t for t, rule in settings.keep.items() if rule == KEEP_ALL})
        tables = [t.ref for t in manifest.tables]
        if proven_since_load:
            found = unchanged_since_load(conn, manifest, written_by, last.expected_rows)
            unchanged = {manifest.table(f.table).ref for f in found if f.ok}
            evidence = [(f, f"{f.written_since:,} written since the load",
                         "verified by the load, unchanged since" if f.ok else "CHANGED SINCE THE LOAD") for f in found]
        else:
            found = compare_with_manifest(conn, manifest, last.loaded_checksums, last.expected_rows)
            evidence = [(f, f"checksum {'matches' if f.checksum_matches else 'differs'}",
                         "matches" if f.checksum_matches else "DIFFERS") for f in found]
        yield _verdict(
            asset, "rows_and_checksums_match_snapshot",
            [f"{f.table} ({f.rows:,} rows, expected {f.expected_rows:,}, {detail})" for f, detail, _ in evidence
             if not f.ok],
            "Differs from the snapshot", "Run the partition again.", "tables",
            ["table", "rows", "expected_rows", "checksum"],
            [{"table": f.table, "rows": f.rows, "expected_rows": f.expected_rows, "checksum": label}
             for f, _, label in evidence])
        found = sequence_positions(conn, tables)
        yield _verdict(
            asset, "sequences_at_or_above_loaded_max",
            [f"{f.sequence} would give {f.next_value} but {f.table}.{f.column} holds {f.loaded_max}"
             for f in found if not f.ok],
            "Behind the data", "An insert would collide; run the partition again to reset them.", "sequences",
            ["sequence", "next_value", "loaded_max"],
            [{"sequence": f.sequence, "next_value": f.next_value, "loaded_max": f.loaded_max} for f in found])
        found = orphaned_rows(conn, tables, unchanged)
        yield _verdict(
            asset, "no_orphaned_foreign_keys",
            [f"{f.orphans:,} in {f.table} ({f.constraint} to {f.references})" for f in found if f.orphans],
            "Orphaned rows", "Run the partition again; validate the foreign key if it is NOT VALID.",
            "foreign_keys", ["constraint", "table", "references", "orphans", "how"],
            [{"constraint": f.constraint, "table": f.table, "references": f.references, "orphans": f.orphans,
              "how": f.how} for f in found])
        if settings.subset:
            found = subset_closure(conn, tables)
            yield _verdict(
                asset, SUBSET_CHECK[0],
                [f"{f.missing_parents:,} keys of {f.table} missing from {f.references} ({f.constraint})"
                 for f in found if f.missing_parents],
                "Missing parents", "Run the partition again; a row was deleted or a key changed since the load.",
                "foreign_keys", ["constraint", "table", "references", "rows_with_key", "missing_parents"],
                [{"constraint": f.constraint, "table": f.table, "references": f.references, "rows_with_key": f.rows,
                  "missing_parents": f.missing_parents} for f in found])
        if masked:
            found = _mask_audits(conn, decoding, manifest, masked, last, unchanged)
            yield _verdict(
                asset, MASKED_CHECK[0],
                [f"{f.column} ({f.equal:,} of {f.compared:,} values)" for f in found if f.equal],
                "Production values still present", "Choose a strategy that changes every value.", "columns",
                ["column", "rule", "production_values", "still_present"],
                [{"column": f.column, "rule": settings.mask[f.column].describe(), "production_values": f.compared,
                  "still_present": f.equal} for f in found])


def drift_result(asset: str, conn, manifest: Manifest) -> dg.AssetCheckResult:
    """Production's recorded definitions against the environment's, one row per difference."""
    production = definitions_of(manifest)
    if production is None:
        return dg.AssetCheckResult(
            asset_key=asset, check_name=DRIFT_CHECK[0], passed=False,
            description="The snapshot records no definitions (taken by an older version): materialize prod_snapshot "
                        "with refresh: true.")
    present = read_definitions(conn, [t.ref for t in production.tables])
    try:
        selected = select_tables(list_tables(conn), manifest.include, manifest.exclude)
    except ReplicationError:
        selected = []
    extra = sorted(set(selected) - {t.ref for t in production.tables})
    found = compare(production, present, extra)
    return _verdict(asset, DRIFT_CHECK[0], [d.describe() for d in found], "Differs from production",
                    "Run the migrations, or set schema: add or production for this environment.", "differences",
                    ["difference", "table", "name", "production", "environment"], [d.as_row() for d in found])


def _mask_audits(conn, decoding, manifest: Manifest, masked: dict[str, list[str]], last: LastLoad, unchanged: set
                 ) -> list[MaskAudit]:
    """The load counted, per masked column, the production values it still holds; with the table
    unchanged since, those counts stand. Otherwise production's values are read from the snapshot."""
    columns = [f"{table}.{column}" for table, cols in masked.items() for column in cols]
    tables_unchanged = all(manifest.table(table).ref in unchanged for table in masked)
    if tables_unchanged and all(c in last.mask_overlaps for c in columns):
        return [MaskAudit(c, *last.mask_overlaps[c]) for c in columns]
    return masked_value_overlaps(conn, decoding(), manifest, masked)


def build_checks(config: ReplicationConfig) -> list[dg.AssetChecksDefinition]:
    return [build_snapshot_checks(config),
            *(build_environment_checks(name, settings, config.masked_columns)
              for name, settings in config.environments.items())]
