"""One environment's refresh from start to end: the guards, the snapshot verified under a lease, the
load, and retention after it. Everything the environment's step does, without Dagster: the asset
hands it connections, the snapshot and the settings, and shows what comes back."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import psycopg
from psycopg import IsolationLevel

from ..pg.connection import Address, Connect
from ..errors import SchemaMismatchError, SwapRefusedError
from ..pg.locks import LockPolicy
from ..pg.session import prepare_transaction
from ..privacy.mask import MaskRule, mask_problems, stale_mask_error
from ..privacy.scrub import SensitiveColumns
from ..progress import Log
from ..snapshot.manifest import Manifest
from ..snapshot.retention import PruneReport, prune
from ..snapshot.verify import verify_snapshot
from ..storage import SnapshotLocation
from ..subset.plan import SubsetRule
from .guard import refuse_production_address, refuse_same_database, server_identity
from .keep import KeepPlan, plan_keep
from .plan import check_personal_data
from .report import LoadReport
from ..schema.reconcile import SchemaPlan, plan_schema
from .dependents import Dependents
from .swap import DEFAULT_JOBS, refusal, swap_dependents, swap_snapshot
from .transaction import load_snapshot

# A schema that drifted a long way logs its first differences; the drift check lists them all.
DIFFERENCES_LOGGED = 10


@dataclass(frozen=True)
class Target:
    """The environment's database, and production's, which it must never be."""

    environment: str
    address: Address
    connect: Connect
    prod_address: Address
    prod_connect: Connect
    variable: str  # the environment's {ENV}_DB_CONNECTION, named when it leads to production


@dataclass(frozen=True)
class Policy:
    """What replication.yaml says of the environment, and the masking key."""

    masks: dict[str, dict[str, MaskRule]] = field(default_factory=dict)
    subset: dict[str, SubsetRule] = field(default_factory=dict)
    locks: LockPolicy = LockPolicy()
    personal_data: str = "error"  # unmasked_pii: error | warn | allow
    masking_key: str | None = None
    verify_checksums: bool = True
    load: str = "auto"  # auto | swap | in_place
    jobs: int = DEFAULT_JOBS
    schema: str = "strict"  # strict | shared | add | production
    keep: dict[str, str] = field(default_factory=dict)  # schema.table -> all | condition


@dataclass
class Refreshed:
    manifest: Manifest
    report: LoadReport
    pruned: PruneReport


def refresh_environment(target: Target, snapshot: SnapshotLocation, policy: Policy, *, keep: int,
                        sensitive: SensitiveColumns, masked_columns: list[str] | tuple[str, ...] = (),
                        log: Log = print, warn: Log = print) -> Refreshed:
    """Refuse production, verify the snapshot before connecting, load it in one transaction, prune.

    `sensitive` learns the snapshot's columns as soon as the manifest is read, so an error after
    that never quotes a value of a masked or personal column.
    """
    refuse_production_address(target.environment, target.address, target.prod_address, target.variable)
    if not snapshot.files():
        verify_snapshot(snapshot)  # says which partition to materialize first
    # Shared: pruning by another run's step cannot delete the snapshot while it loads.
    with snapshot.lease(exclusive=False):
        # Verified before connecting: a damaged snapshot must not cost the target anything.
        manifest = verify_snapshot(snapshot)
        snapshot.require_identity(manifest.tables)
        sensitive.learn(manifest, masked_columns)
        log(f"Snapshot {snapshot} verified ({len(manifest.tables)} objects, sha256); loading {target.environment} "
            f"({target.address})")
        with target.connect() as conn:
            refuse_same_database(target.environment, target.address, server_identity(conn),
                                 _production_identity(target, warn), target.variable)
            schema, kept, loading = _plan_definitions(conn, target.environment, snapshot, manifest, policy, log)
            mode, reason, dependents = choose_mode(conn, target.environment, policy.load,
                                                   [e.ref for e in loading.tables],
                                                   schema.in_transaction_only)
            if reason:
                log(f"{target.environment}: load: auto loads in place, not by swap: {reason}")
            common = dict(environment=target.environment, verify_checksums=policy.verify_checksums,
                          locks=policy.locks, masks=policy.masks, masking_key=policy.masking_key,
                          subset=policy.subset, personal_data=policy.personal_data, log=log, warn=warn)
            if mode == "swap":
                report = swap_snapshot(target.connect, conn, snapshot, loading, jobs=policy.jobs,
                                       dependents=dependents, keep=kept, sources=schema.sources, **common)
            else:
                report = load_snapshot(conn, snapshot, loading, schema=schema, keep=kept, **common)
                report.mode_reason = reason
            _report_definitions(report, schema, kept)
    how = (f"switched in {report.switch_seconds:.3f} s after building with {report.jobs} connection(s)"
           if report.mode == "swap" else "in one transaction")
    log(f"{target.environment}: {len(report.tables)} tables, {report.total_rows:,} rows loaded {how} in "
        f"{report.seconds:.1f} s ({report.indexes_rebuilt} indexes rebuilt, {report.foreign_keys_readded} "
        "foreign keys re-validated)")
    if report.schema_changes:
        log(f"{target.environment}: schema: {schema.mode} changed {len(report.schema_changes)} definitions: "
            f"{'; '.join(report.schema_changes)}")
    return Refreshed(manifest, report, prune_after_load(snapshot, keep, log, warn))


def _plan_definitions(conn: psycopg.Connection, environment: str, snapshot: SnapshotLocation, manifest: Manifest,
                      policy: Policy, log: Log) -> tuple[SchemaPlan, KeepPlan, Manifest]:
    """What `schema:` and `keep:` decide, read from the catalog before anything is written; and the
    manifest the load writes (less what shared skips and what keep: all never replaces)."""
    prepare_transaction(conn, IsolationLevel.READ_COMMITTED, read_only=True)
    with conn.transaction():
        schema = plan_schema(conn, snapshot, manifest, environment, policy.schema)
        keep = plan_keep(conn, environment, policy.keep, [e.ref for e in schema.manifest.tables])
    prepare_transaction(conn, IsolationLevel.READ_COMMITTED, read_only=False)
    loading = dataclasses.replace(schema.manifest,
                                  tables=[e for e in schema.manifest.tables if e.key not in keep.whole])
    subset_skipping = sorted(key for key in schema.skipped_columns if key in policy.subset)
    if subset_skipping:
        raise SchemaMismatchError(
            f"{environment}: the subset tables {', '.join(subset_skipping)} lack production columns "
            f"({'; '.join(f'{k}: ' + ', '.join(schema.skipped_columns[k]) for k in subset_skipping)}), which schema: "
            "shared cannot skip in a subset. Add the columns with the migrations, or use schema: add. Nothing was written.")
    # The masks against the snapshot first (a mistyped key would otherwise show as an uncovered
    # column), then privacy by default: both before any write, whatever the schema mode creates.
    problems = mask_problems(environment, policy.masks, loading)
    if problems:
        raise stale_mask_error(environment, problems, loading)
    check_personal_data(environment, loading, policy.masks, policy.personal_data, None)
    shown = [d.describe() for d in schema.differences[:DIFFERENCES_LOGGED]]
    if shown:
        more = len(schema.differences) - len(shown)
        log(f"{environment}: differs from production (schema: {schema.mode}): {'; '.join(shown)}"
            + (f"; and {more} more (the schema_matches_production check lists them all)" if more else ""))
    if schema.skipped_tables or schema.skipped_columns:
        log(f"{environment}: schema: shared skips {', '.join(schema.skipped_tables) or 'no table'} and the columns "
            f"{', '.join(f'{t}.{c}' for t, cs in schema.skipped_columns.items() for c in cs) or '(none)'}, "
            "which this environment lacks")
    return schema, keep, loading


def _report_definitions(report: LoadReport, schema: SchemaPlan, keep: KeepPlan) -> None:
    report.schema_mode = schema.mode
    report.schema_differences = [d.describe() for d in schema.differences]
    report.skipped_tables = list(schema.skipped_tables)
    report.skipped_columns = dict(schema.skipped_columns)
    report.skipped_grants = list(schema.changes.skipped_grants)
    report.kept_tables = list(keep.whole)


def choose_mode(conn: psycopg.Connection, environment: str, load: str, tables: list, in_transaction: str = ""
                ) -> tuple[str, str, Dependents | None]:
    """(swap or in_place, why in place when auto chose it, what is bound to the tables as the choice
    read it, for the swap to build on). `swap` that cannot run refuses here, before anything is written.
    `in_transaction` says why this load must run in one transaction (schema changes)."""
    if load == "in_place":
        return "in_place", "", None
    if in_transaction:
        if load == "swap":
            raise SwapRefusedError(
                f"{environment}: load: swap cannot run this time: {in_transaction}, which a swap does not carry yet. "
                "Set load: auto (it loads in place when it must) or in_place. Nothing was written.")
        return "in_place", in_transaction, None
    found = swap_dependents(conn, tables)
    if not found.blockers:
        return "swap", "", found
    if load == "swap":
        raise refusal(environment, found.blockers)
    return "in_place", "; ".join(found.blockers), None


def _production_identity(target: Target, warn: Log):
    """Production's server identity, or None when production cannot be reached from here."""
    try:
        with target.prod_connect() as conn:
            return server_identity(conn)
    except psycopg.OperationalError:
        warn(f"Production {target.prod_address} did not answer, so only its address was compared with the target's.")
        return None


def prune_after_load(snapshot: SnapshotLocation, keep: int, log: Log, warn: Log) -> PruneReport:
    """Retention after a committed load; a failure here must not fail a load that succeeded."""
    try:
        pruned = prune(snapshot.store, keep, protect=(snapshot.name,))
    except Exception as exc:  # noqa: BLE001 - OSError on a disk, botocore's errors on a store
        warn(f"Could not prune old snapshots in {snapshot.store.location()}: {exc.__class__.__name__}: {exc}")
        return PruneReport()
    if pruned.deleted:
        log(f"Retention (snapshot.keep: {keep}): deleted {', '.join(pruned.deleted)}, "
            f"{pruned.freed_bytes / 1e6:,.1f} MB freed; {len(pruned.kept)} kept")
    if pruned.in_use:
        log(f"Retention: kept {', '.join(pruned.in_use)} for now, another step is using it")
    return pruned
