"""Load a verified snapshot into one target database in a single transaction."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
from psycopg import sql

from ..pg.catalog import TableRef
from ..verify.checksum import ChecksumRequest, checksum_algorithm, checksum_many
from ..errors import LoadVerificationError
from ..pg.locks import LockPolicy, LockWait, acquire, lock_statement, lock_table_full
from ..snapshot.manifest import Manifest
from ..privacy.mask import MaskRule, set_key
from .copy import compare_checksum, copy_tables
from .plan import REBUILD_MIN_ROWS, LoadPlan, plan_for_report
from .report import LoadReport
from .postload import analyze, refresh_materialized_views
from ..progress import Log, Ticker
from .keep import KeepPlan, read_kept_rows, write_kept_rows
from .rebuild import TakenOff, outside_referencing_tables, put_back, take_off
from ..schema.apply import apply_statements, lock_existing
from ..schema.changes import SchemaChanges, Statement
from ..schema.reconcile import SchemaPlan
from ..pg.sequences import advance_sequences, loaded_maxima, owned_sequences
from ..storage import SnapshotLocation, as_location
from ..subset.plan import SubsetRule



def load_snapshot(
    conn: psycopg.Connection,
    snapshot: SnapshotLocation | Path,
    manifest: Manifest,
    *,
    environment: str,
    verify_checksums: bool = True,
    locks: LockPolicy = LockPolicy(),
    rebuild_indexes: bool = True,
    rebuild_min_rows: int = REBUILD_MIN_ROWS,
    masks: dict[str, dict[str, MaskRule]] | None = None,
    masking_key: str | None = None,
    subset: dict[str, SubsetRule] | None = None,
    personal_data: str = "allow",
    log: Log | None = None,
    warn: Log | None = None,
    schema: SchemaPlan | None = None,
    keep: KeepPlan | None = None,
) -> LoadReport:
    """Replace the replicated tables of `conn` with the snapshot, all or nothing, in pg_restore's order.

    One transaction: the tables are locked (in short attempts, per `locks`), their foreign keys,
    keys and indexes recorded and dropped, the tables truncated, every file copied in, keys and
    indexes rebuilt, foreign keys re-added validated, row counts and checksums compared, dependent
    materialized views refreshed and the tables analyzed. Any error rolls it all back: the
    environment keeps its previous data and definitions, and readers wait on the locks rather
    than seeing a partial load. Sequences are set only after COMMIT, because setval is not
    transactional and must not move on a rollback.
    `rebuild_indexes=False` keeps indexes in place during COPY (the slower path, for comparison);
    so do tables of fewer than `rebuild_min_rows` rows, for which dropping and building their
    indexes costs more than indexing their rows one by one.
    `masks` ({schema.table: {column: rule}}) masks those columns on the way in (see engine.privacy.mask);
    their checksums are then compared on the unmasked columns only.
    `subset` ({schema.table: rule}) keeps only the rows the rules choose and every row they need
    (see engine.subset.plan); those tables' staged copies are verified against production, and the
    checksums of what was kept are recorded for the checks.
    `personal_data` (unmasked_pii: error, warn or allow) decides what happens to snapshot columns
    that look personal and have no rule: refused before anything is written, `warn`ed about, or loaded.
    `schema` (engine.schema.reconcile) is what the environment's `schema:` mode decided: the tables
    and columns to load, and the definitions to change, before the rows (in this transaction, after
    taking the locks) and after them. `keep` (engine.load.keep) holds the rows the environment owns:
    read before anything is emptied, written back once production's rows are verified.
    """
    started = time.monotonic()
    location = as_location(snapshot)
    location.require_identity(manifest.tables)
    report = LoadReport(environment)
    changes = schema.changes if schema is not None else SchemaChanges()
    if changes.enum_values:
        # PostgreSQL cannot use an enum value before the transaction that added it commits.
        conn.rollback()
        with conn.transaction():
            apply_statements(conn, changes.enum_values, log, environment)
    sources = schema.sources if schema is not None else {}
    options = dict(locks=locks, verify=verify_checksums, rebuild_indexes=rebuild_indexes,
                   rebuild_min_rows=rebuild_min_rows, masking_key=masking_key, log=log, keep=keep,
                   after_data=changes.after_data)
    plan = None
    try:
        if not changes.structure:
            plan = plan_for_report(conn, manifest, report, masks or {}, masking_key, subset, personal_data, warn,
                                   sources=sources)
            conn.rollback()  # end the read-only catalog transaction before the write transaction
            with conn.transaction():
                _write(conn, location, plan, report, **options)
        else:
            conn.rollback()
            with conn.transaction():
                # The tables that exist are locked first, under the lock policy; then the new
                # definitions, and the plan is read from them, in the same transaction.
                waited = lock_existing(conn, manifest, locks, environment, log)
                report.lock_wait_seconds, report.terminated_sessions = waited.seconds, waited.terminated
                if keep:
                    read_kept_rows(conn, keep)
                apply_statements(conn, changes.structure, log, environment)
                plan = plan_for_report(conn, manifest, report, masks or {}, masking_key, subset, personal_data, warn,
                                       begin=False, sources=sources)
                _write(conn, location, plan, report, **options)
    except psycopg.errors.OutOfMemory as exc:
        raise lock_table_full(conn, exc, plan.order if plan else [e.ref for e in manifest.tables], environment,
                              exclusive=True) from None
    report.schema_changes = changes.described
    report.sequences_reset = reset_sequences(conn, manifest)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _write(conn: psycopg.Connection, location: SnapshotLocation, plan: LoadPlan, report: LoadReport, *, locks: LockPolicy,
           verify: bool, rebuild_indexes: bool, rebuild_min_rows: int, masking_key: str | None,
           log: Log | None, keep: KeepPlan | None = None, after_data: list[Statement] = ()) -> None:
    """The write transaction's body, in pg_restore's order."""
    waited = _take_locks(conn, plan, locks, log)
    report.lock_wait_seconds += waited.seconds
    report.terminated_sessions += waited.terminated
    if keep and any(kept.staged is None for kept in keep.tables):
        read_kept_rows(conn, keep)
    report.transaction_id = str(conn.execute("SELECT pg_catalog.txid_current() % 4294967296").fetchone()[0])
    if masking_key:
        set_key(conn, masking_key)
    if plan.cyclic:
        # Foreign keys that stay in place (tables not ours to alter) may form a cycle: no order
        # satisfies them row by row, so they are checked at COMMIT.
        conn.execute("SET CONSTRAINTS ALL DEFERRED")
        report.deferred_constraints = True
    # Before TRUNCATE: an outside table's foreign key to a loaded table would make it refuse.
    small = [ref for ref in plan.order if plan.entries[ref].rows < rebuild_min_rows]
    taken = take_off(conn, plan.order, keep_indexes=small) if rebuild_indexes else TakenOff()
    _log_fallbacks(taken, plan.environment, log)
    conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(plan.rows(ref) for ref in plan.order)))
    with Ticker(log) as ticker:
        expected_unmasked = copy_tables(conn, location, plan, report, verify, rebuild_indexes, ticker, masking_key)
    put_back(conn, taken)
    record_rebuild(report, taken)
    if verify:
        verify_tables(conn, plan, report, expected_unmasked)
    if keep:
        write_kept_rows(conn, plan.environment, keep, plan.order)
        record_kept(conn, plan, report, keep)
    apply_statements(conn, list(after_data), log, plan.environment)
    report.materialized_views_refreshed, report.materialized_views_skipped = refresh_materialized_views(conn, plan.order)
    analyze(conn, plan.order)


def record_kept(conn: psycopg.Connection, plan: LoadPlan, report: LoadReport, keep: KeepPlan) -> None:
    """What the checks hold a table with kept rows to: its rows and checksum once they are back."""
    tables = [kept.table for kept in keep.tables]
    requests = [ChecksumRequest.of(plan.target(ref), plan.entries[ref].column_names,
                                   algorithm=checksum_algorithm(plan.entries[ref].content_checksum)) for ref in tables]
    for kept, [(rows, checksum)] in zip(keep.tables, checksum_many(conn, requests)):
        report.loaded_checksums[kept.table.key] = checksum
        report.rows_after_load[kept.table.key] = rows
        report.kept_rows[kept.table.key] = [kept.rows, kept.collisions]


def _take_locks(conn: psycopg.Connection, plan: LoadPlan, policy: LockPolicy, log: Log | None) -> LockWait:
    """ACCESS EXCLUSIVE on the loaded tables, and on the outside tables whose foreign keys to them come off.

    Taken first, in short attempts: nothing is read or changed until every lock is held, so a
    blocker costs time, never a half-done load.
    """
    tables = [ref.ident.as_string(conn) for ref in plan.order]
    referencing = outside_referencing_tables(conn, plan.order)
    relations = tables + referencing
    statement = lock_statement(relations, "ACCESS EXCLUSIVE",
                               only=[ref not in plan.partitioned for ref in plan.order] + [True] * len(referencing))
    return acquire(conn, statement, relations, "ACCESS EXCLUSIVE", policy, who=plan.environment,
                   replicated=tables, log=log)


def verify_tables(conn: psycopg.Connection, plan: LoadPlan, report: LoadReport,
                  expected_unmasked: dict[TableRef, tuple[list[str], str]], tables: list[TableRef] | None = None) -> None:
    """Every table's (or `tables`') checksums against production's, all in a few statements.

    A masked table is compared on its unmasked columns, and its whole checksum as loaded is kept
    for the checks that look again later.
    """
    started = time.monotonic()
    requests, compared = [], []
    loads = {loaded.key: loaded for loaded in report.tables}
    for ref in tables if tables is not None else plan.order:
        entry = plan.entries[ref]
        loaded = loads[entry.key]
        loaded.checksum_verified = True
        if plan.subsetted(ref):
            # Verified whole in staging; what was kept is recorded for the checks.
            requests.append(ChecksumRequest.of(plan.target(ref), entry.column_names,
                                               algorithm=checksum_algorithm(entry.content_checksum)))
        elif ref in expected_unmasked:
            unmasked, expected = expected_unmasked[ref]
            requests.append(ChecksumRequest.of(plan.target(ref), unmasked, entry.column_names,
                                               algorithm=checksum_algorithm(expected)))
        elif entry.content_checksum:
            requests.append(ChecksumRequest.of(plan.target(ref), entry.column_names,
                                               algorithm=checksum_algorithm(entry.content_checksum)))
        else:
            continue
        compared.append(ref)
    for ref, found in zip(compared, checksum_many(conn, requests)):
        entry = plan.entries[ref]
        if plan.subsetted(ref):
            report.loaded_checksums[entry.key] = found[0][1]
        elif ref in expected_unmasked:
            unmasked, expected = expected_unmasked[ref]
            if unmasked and expected and found[0][1] != expected:
                raise LoadVerificationError(
                    f"{plan.environment}: the unmasked columns of {entry.key} differ from production after masking "
                    f"(checksum {found[0][1]} vs {expected}). The load was rolled back."
                )
            report.loaded_checksums[entry.key] = found[1][1]
        else:
            compare_checksum(entry, plan.environment, found[0][1])
    report.verify_seconds = round(time.monotonic() - started, 3)


def _log_fallbacks(taken: TakenOff, environment: str, log: Log | None) -> None:
    if log is None:
        return
    for table, why in taken.fallback.items():
        log(f"load {environment} {table}: {why}")


def record_rebuild(report: LoadReport, taken: TakenOff) -> None:
    report.indexes_rebuilt = taken.index_count
    report.foreign_keys_readded = len(taken.foreign_keys)
    report.foreign_key_seconds = taken.foreign_key_seconds
    report.fallback_tables = dict(taken.fallback)
    for loaded in report.tables:
        loaded.rebuild_seconds = taken.rebuild_seconds.get(loaded.key, 0.0)


def reset_sequences(conn: psycopg.Connection, manifest: Manifest) -> list[str]:
    """Move each owned sequence to at least the loaded maximum and production's value, after COMMIT."""
    conn.autocommit = True
    try:
        return advance_owned_sequences(conn, manifest)
    finally:
        conn.autocommit = False


def advance_owned_sequences(conn: psycopg.Connection, manifest: Manifest) -> list[str]:
    """The work of reset_sequences on the connection as it is (a swap does it inside its switch)."""
    owned = owned_sequences(conn, [entry.ref for entry in manifest.tables])
    maxima = loaded_maxima(conn, owned)
    production = {(entry.ref, s.column): s for entry in manifest.tables for s in entry.sequences}
    targets: dict[str, int] = {}
    for seq in owned:
        prod = production.get((seq.table, seq.column))
        candidates = [v for v in (maxima.get(seq.sequence), prod.last_value if prod and prod.is_called else None)
                      if v is not None]
        if candidates:
            targets[seq.sequence] = max(candidates)
    advance_sequences(conn, targets)
    return [f"{name}={value}" for name, value in sorted(targets.items())]
