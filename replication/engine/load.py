"""Load a verified snapshot into one target database in a single transaction."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import IsolationLevel, sql

from .catalog import Column, TableRef, columns_of, foreign_key_edges, foreign_key_order, own_rows, parents_of, \
    partitioned_tables
from .checksum import ChecksumRequest, checksum_algorithm, checksum_many, content_checksums
from .errors import ConfigurationError, LoadVerificationError, SchemaMismatchError
from .locks import LockPolicy, LockWait, acquire, lock_statement, lock_table_full
from .manifest import Manifest, TableEntry
from .mask import MaskRule, check_rules, foreign_key_gaps, mask_expression, mask_problems, set_key, stale_mask_error
from .postload import analyze, refresh_materialized_views
from .privileges import require_privileges
from .progress import Log, Ticker
from .rebuild import TakenOff, outside_referencing_tables, put_back, take_off
from .sequences import advance_sequences, loaded_maxima, owned_sequences
from .storage import SnapshotLocation, as_location
from .prefilter import prefilter
from .subset import DEFAULT_SUBSET_KEY, RowChooser, SubsetPlan, SubsetRule, kept_condition, plan_subset, stage_table
from .session import prepare_transaction


# Below this many rows a table keeps its keys and indexes during the load: on a schema of a
# thousand small tables, dropping and building them is most of the load's time.
REBUILD_MIN_ROWS = 1000


@dataclass
class TableLoad:
    key: str
    rows: int
    bytes: int
    seconds: float
    checksum_verified: bool
    rebuild_seconds: float = 0.0  # recreating this table's keys and indexes after COPY


@dataclass
class LoadReport:
    environment: str
    tables: list[TableLoad] = field(default_factory=list)
    sequences_reset: list[str] = field(default_factory=list)
    deferred_constraints: bool = False
    seconds: float = 0.0
    indexes_rebuilt: int = 0
    foreign_keys_readded: int = 0
    foreign_key_seconds: float = 0.0
    verify_seconds: float = 0.0
    fallback_tables: dict[str, str] = field(default_factory=dict)  # kept their indexes, and why
    materialized_views_refreshed: list[str] = field(default_factory=list)
    materialized_views_skipped: dict[str, str] = field(default_factory=dict)
    masked_columns: dict[str, str] = field(default_factory=dict)  # schema.table.column -> rule
    # Masked and subset tables cannot be compared with production's checksum; their checksum as
    # loaded is kept instead, so a later check can tell whether anything changed since.
    loaded_checksums: dict[str, str] = field(default_factory=dict)
    lock_wait_seconds: float = 0.0  # waiting for other sessions' locks before anything was written
    terminated_sessions: list[str] = field(default_factory=list)  # ended under blocking_sessions: terminate
    # The load transaction's id (32 bits, as xmin shows it): every row it wrote carries it, so a
    # check after COMMIT proves a table unchanged since its verification by reading xmin alone.
    transaction_id: str = ""
    # Masked column -> [distinct production values, how many of them the column still holds],
    # counted in the load transaction while production's staged values were at hand.
    mask_overlaps: dict[str, list[int]] = field(default_factory=dict)
    # Subset tables: schema.table -> [rows kept, rows in the snapshot].
    subset_rows: dict[str, list[int]] = field(default_factory=dict)
    # Subset tables: schema.table -> rows staged, those its prefilter let through (all, without one).
    subset_staged: dict[str, int] = field(default_factory=dict)

    @property
    def total_rows(self) -> int:
        return sum(t.rows for t in self.tables)

    @property
    def total_bytes(self) -> int:
        return sum(t.bytes for t in self.tables)


def check_target_schema(conn: psycopg.Connection, manifest: Manifest, environment: str) -> dict[TableRef, list[Column]]:
    """Fail before any write when the target cannot take the snapshot's tables and columns; else
    the target's columns of every snapshot table.

    The target's own migrations own its schema; this only reads the catalog, once for all tables.
    """
    found = columns_of(conn, [entry.ref for entry in manifest.tables])
    for entry in manifest.tables:
        ref = entry.ref
        if ref not in found:
            raise SchemaMismatchError(
                f"{environment}: table {ref.key} does not exist in the target database. Create it "
                f"with the {environment} migrations, or exclude it from prod_snapshot. Nothing was written."
            )
        target = {c.name: c for c in found[ref]}
        for name in entry.column_names:
            column = target.get(name)
            if column is None:
                raise SchemaMismatchError(
                    f"{environment}: column {name!r} of table {ref.key} does not exist in the target "
                    f"database. Add it with the {environment} migrations. Nothing was written."
                )
            if column.generated:
                raise SchemaMismatchError(
                    f"{environment}: column {name!r} of table {ref.key} is generated in the target "
                    "but a plain column in production, so it cannot be loaded. Nothing was written."
                )
        wanted = set(entry.column_names)
        for column in target.values():
            if column.name not in wanted and not column.fillable_by_target:
                raise SchemaMismatchError(
                    f"{environment}: column {column.name!r} of table {ref.key} is NOT NULL without a "
                    "default in the target and does not exist in production; give it a default or "
                    "make it nullable. Nothing was written."
                )
    return found


@dataclass
class LoadPlan:
    """What the write transaction needs, read from the target's catalog before it begins."""

    environment: str
    entries: dict[TableRef, TableEntry]
    order: list[TableRef]  # referenced tables first
    cyclic: bool  # foreign keys that no order satisfies: checked at COMMIT instead
    partitioned: set[TableRef]
    masks: dict[str, dict[str, MaskRule]]
    mask_columns: dict[str, dict[str, Column]]
    header: str  # COPY's HEADER option: MATCH where the server checks the names
    subset: SubsetPlan | None = None

    def subsetted(self, ref: TableRef) -> bool:
        return self.subset is not None and self.subset.covers(ref)

    def rows(self, ref: TableRef) -> sql.Composed:
        """The table's own rows (ONLY for plain tables): an inheritance child keeps its rows, and is
        loaded, truncated and counted as a table of its own."""
        return own_rows(ref, self.partitioned)


def plan_load(conn: psycopg.Connection, manifest: Manifest, environment: str,
              masks: dict[str, dict[str, MaskRule]], masking_key: str | None,
              subset: dict[str, SubsetRule] | None = None) -> LoadPlan:
    """Check the target, the masks and the subset, before anything is written."""
    entries = {entry.ref: entry for entry in manifest.tables}
    columns = check_target_schema(conn, manifest, environment)
    require_privileges(conn, environment, list(entries), staging=bool(masks or subset))
    edges = foreign_key_edges(conn, list(entries))
    order, cyclic = foreign_key_order(parents_of(list(entries), edges))
    mask_columns = _check_masks(conn, environment, manifest, masks, masking_key)
    return LoadPlan(environment, entries, order, cyclic, partitioned_tables(conn, order), masks, mask_columns,
                    "MATCH" if conn.info.server_version >= 150000 else "true",
                    plan_subset(conn, environment, manifest, subset or {}, edges, columns))


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
    log: Log | None = None,
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
    `masks` ({schema.table: {column: rule}}) masks those columns on the way in (see engine.mask);
    their checksums are then compared on the unmasked columns only.
    `subset` ({schema.table: rule}) keeps only the rows the rules choose and every row they need
    (see engine.subset); those tables' staged copies are verified against production, and the
    checksums of what was kept are recorded for the checks.
    """
    started = time.monotonic()
    location = as_location(snapshot)
    location.require_identity(manifest.tables)
    report = LoadReport(environment)
    prepare_transaction(conn, IsolationLevel.READ_COMMITTED, read_only=False)
    plan = plan_load(conn, manifest, environment, masks or {}, masking_key, subset)
    report.masked_columns = {f"{table}.{col}": rule.describe()
                             for table, rules in plan.masks.items() for col, rule in rules.items()}
    conn.rollback()  # end the read-only catalog transaction before the write transaction
    try:
        with conn.transaction():
            _write(conn, location, plan, report, locks=locks, verify=verify_checksums,
                   rebuild_indexes=rebuild_indexes, rebuild_min_rows=rebuild_min_rows, masking_key=masking_key,
                   log=log)
    except psycopg.errors.OutOfMemory as exc:
        raise lock_table_full(conn, exc, plan.order, environment, exclusive=True) from None
    report.sequences_reset = _reset_sequences(conn, manifest)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _write(conn: psycopg.Connection, location: SnapshotLocation, plan: LoadPlan, report: LoadReport, *, locks: LockPolicy,
           verify: bool, rebuild_indexes: bool, rebuild_min_rows: int, masking_key: str | None,
           log: Log | None) -> None:
    """The write transaction's body, in pg_restore's order."""
    waited = _take_locks(conn, plan, locks, log)
    report.lock_wait_seconds, report.terminated_sessions = waited.seconds, waited.terminated
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
        expected_unmasked = _copy_tables(conn, location, plan, report, verify, rebuild_indexes, ticker, masking_key)
    put_back(conn, taken)
    _record_rebuild(report, taken)
    if verify:
        _verify_tables(conn, plan, report, expected_unmasked)
    report.materialized_views_refreshed, report.materialized_views_skipped = refresh_materialized_views(conn, plan.order)
    analyze(conn, plan.order)


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


def _copy_tables(conn: psycopg.Connection, location: SnapshotLocation, plan: LoadPlan, report: LoadReport, verify: bool,
                 rebuild_indexes: bool, ticker: Ticker, masking_key: str | None
                 ) -> dict[TableRef, tuple[list[str], str]]:
    """COPY every file in foreign-key order; masked tables through their staging table, subset
    tables staged first and inserted once every staged table has chosen its rows."""
    expected_unmasked: dict[TableRef, tuple[list[str], str]] = {}
    staged: dict[TableRef, TableLoad] = {}
    chooser = RowChooser(conn, plan.subset, masking_key or DEFAULT_SUBSET_KEY) if plan.subset else None
    for number, ref in enumerate(plan.order):
        entry = plan.entries[ref]
        if plan.subsetted(ref):
            where = prefilter(conn, plan.subset, ref, chooser.staged, chooser.bitmaps) if chooser.incremental else None
            staging, staged[ref] = _stage_subset_table(conn, location, entry, plan, number, verify, ticker, where)
            report.subset_staged[entry.key] = staged[ref].rows
            chooser.add(ref, staging, filtered=where is not None)
            report.tables.append(staged[ref])
            continue
        if entry.key in plan.masks:
            loaded, expected, overlaps = _copy_masked(conn, location, entry, plan, number, verify, ticker)
            report.tables.append(loaded)
            report.mask_overlaps.update(overlaps)
            expected_unmasked[ref] = expected
            continue
        # FREEZE writes rows already frozen, sparing a later VACUUM; PostgreSQL allows it on plain
        # tables truncated in this transaction.
        freeze = rebuild_indexes and ref not in plan.partitioned
        report.tables.append(_copy_in(conn, location, entry, plan.environment, plan.header, freeze, ticker))
    if staged:
        chooser.finish()
        for ref, loaded in staged.items():
            _insert_subset(conn, plan, plan.entries[ref], chooser.staged, loaded, report)
    return expected_unmasked


def _stage_subset_table(conn: psycopg.Connection, location: SnapshotLocation, entry: TableEntry, plan: LoadPlan,
                        number: int, verify: bool, ticker: Ticker,
                        where: sql.Composable | None) -> tuple[TableRef, TableLoad]:
    """The file into a private temporary table: whole, or the rows that pass its prefilter `where`.

    Where every column has production's type in the target, it is staged as text: the values are
    production's own output (every object is read through its sha256), and the same types' input
    functions give back production's values for the rows that are kept. Otherwise it is staged
    typed and checked against production's checksum there, as a whole load is.
    """
    staging = stage_table(conn, plan.subset, entry.ref, number)
    loaded = _copy_in(conn, location, entry, plan.environment, plan.header, False, ticker, into=staging, where=where)
    if verify and entry.ref not in plan.subset.as_text:
        algorithm = checksum_algorithm(entry.content_checksum)
        (full,) = content_checksums(conn, staging, [entry.column_names], algorithm=algorithm)
        _compare(entry, plan.environment, full[1])
    return staging, loaded


def _insert_subset(conn: psycopg.Connection, plan: LoadPlan, entry: TableEntry, staged: dict[TableRef, TableRef],
                   loaded: TableLoad, report: LoadReport) -> None:
    """The chosen rows of one staged table into the real one, masked on the way where the environment masks it."""
    rules = plan.masks.get(entry.key, {})
    kept = sql.SQL("(SELECT {} FROM {} c WHERE {}) t").format(
        plan.subset.typed_columns(entry.ref, "c"), staged[entry.ref].ident, kept_condition(plan.subset, entry.ref, staged))
    loaded.rows = _insert_masked(conn, entry, rules, plan.mask_columns.get(entry.key, {}), kept)
    report.subset_rows[entry.key] = [loaded.rows, entry.rows]
    if rules:
        report.mask_overlaps.update({f"{entry.key}.{name}": mask_overlap(conn, staged[entry.ref], plan.rows(entry.ref), name)
                                     for name in rules})


def _verify_tables(conn: psycopg.Connection, plan: LoadPlan, report: LoadReport,
                   expected_unmasked: dict[TableRef, tuple[list[str], str]]) -> None:
    """Every table's checksums against production's, all tables' in a few statements.

    A masked table is compared on its unmasked columns, and its whole checksum as loaded is kept
    for the checks that look again later.
    """
    started = time.monotonic()
    requests, compared = [], []
    for ref, loaded in zip(plan.order, report.tables):
        entry = plan.entries[ref]
        loaded.checksum_verified = True
        if plan.subsetted(ref):
            # Verified whole in staging; what was kept is recorded for the checks.
            requests.append(ChecksumRequest.of(ref, entry.column_names, algorithm=checksum_algorithm(entry.content_checksum)))
        elif ref in expected_unmasked:
            unmasked, expected = expected_unmasked[ref]
            requests.append(ChecksumRequest.of(ref, unmasked, entry.column_names, algorithm=checksum_algorithm(expected)))
        elif entry.content_checksum:
            requests.append(ChecksumRequest.of(ref, entry.column_names, algorithm=checksum_algorithm(entry.content_checksum)))
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
            _compare(entry, plan.environment, found[0][1])
    report.verify_seconds = round(time.monotonic() - started, 3)


def _check_masks(
    conn: psycopg.Connection, environment: str, manifest: Manifest, masks: dict[str, dict[str, MaskRule]], key: str | None
) -> dict[str, dict[str, Column]]:
    """Validate the masking policy against the snapshot and the target's catalog, before the write transaction."""
    problems = mask_problems(environment, masks, manifest)
    if problems:
        raise stale_mask_error(environment, problems, manifest)
    columns = {table: check_rules(conn, environment, manifest.table(table).ref, rules) for table, rules in masks.items()}
    gaps = foreign_key_gaps(conn, masks)
    if gaps:
        raise ConfigurationError(
            f"{environment}: a masked column is part of a foreign key whose other side is not masked the same "
            f"way, so the key would break: {'; '.join(gaps)}. Nothing was written."
        )
    if not key and any(rule.keyed for rules in masks.values() for rule in rules.values()):
        raise ConfigurationError(
            f"{environment}: MASKING_KEY is not set, and the hash, email, name and phone strategies need it. "
            "Set it to a long random secret, the same for every environment whose masked values must join. "
            "Nothing was written."
        )
    return columns


def _copy_masked(
    conn: psycopg.Connection,
    location: SnapshotLocation,
    entry: TableEntry,
    plan: LoadPlan,
    number: int,
    verify: bool,
    ticker: Ticker,
) -> tuple[TableLoad, tuple[list[str], str], dict[str, list[int]]]:
    """COPY into a private temporary table, then INSERT the masked rows into the real one, and count
    how many production values each masked column still holds (a weak rule shows here)."""
    environment, header = plan.environment, plan.header
    rules, columns = plan.masks[entry.key], plan.mask_columns[entry.key]
    staging = TableRef("pg_temp", f"replication_masked_{number}")
    names = entry.column_names
    cols = sql.SQL(", ").join(sql.Identifier(n) for n in names)
    conn.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
        sql.Identifier(staging.name), cols, entry.ref.ident))
    loaded = _copy_in(conn, location, entry, environment, header, False, ticker, into=staging)
    unmasked = [n for n in names if n not in rules]
    expected = ""
    if verify:
        # The staged rows are production's exactly; then the unmasked columns must survive as they
        # are. One read of the staging table gives both checksums.
        algorithm = checksum_algorithm(entry.content_checksum)
        full, kept = content_checksums(conn, staging, [names, unmasked], algorithm=algorithm)
        _compare(entry, environment, full[1])
        expected = kept[1] if unmasked else ""
    inserted = _insert_masked(conn, entry, rules, columns, sql.Identifier(staging.name))
    if inserted != entry.rows:
        raise LoadVerificationError(
            f"{environment}: table {entry.key} received {inserted} masked rows but the snapshot holds {entry.rows}. "
            "The load was rolled back; check the target's triggers and rules on this table."
        )
    overlaps = {f"{entry.key}.{name}": mask_overlap(conn, staging, plan.rows(entry.ref), name) for name in rules}
    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(staging.name)))
    return loaded, (unmasked, expected), overlaps


def _insert_masked(conn: psycopg.Connection, entry: TableEntry, rules: dict[str, MaskRule], columns: dict[str, Column],
                   source: sql.Composable) -> int:
    """INSERT the rows of `source` into the table, each masked column through its rule; the row count."""
    names = entry.column_names
    values = sql.SQL(", ").join(mask_expression(rules[n], columns[n]) if n in rules else sql.Identifier(n) for n in names)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {}").format(
            entry.ref.ident, sql.SQL(", ").join(sql.Identifier(n) for n in names), values, source))
        return cur.rowcount


def mask_overlap(conn: psycopg.Connection, staging: TableRef, table: sql.Composable, column: str) -> list[int]:
    """[distinct production values of `column` (NULL and empty left out), how many the masked table still holds]."""
    col = sql.Identifier(column)
    compared, equal = conn.execute(sql.SQL(
        "WITH prod AS (SELECT DISTINCT s.{col}::text AS v FROM {staging} s WHERE s.{col} IS NOT NULL "
        "AND s.{col}::text <> ''), env AS (SELECT DISTINCT t.{col}::text AS v FROM {table} t WHERE t.{col} IS NOT NULL) "
        "SELECT (SELECT count(*) FROM prod), (SELECT count(*) FROM prod JOIN env USING (v))"
    ).format(col=col, staging=sql.Identifier(staging.name), table=table)).fetchone()
    return [int(compared), int(equal)]


def _log_fallbacks(taken: TakenOff, environment: str, log: Log | None) -> None:
    if log is None:
        return
    for table, why in taken.fallback.items():
        log(f"load {environment} {table}: {why}")


def _record_rebuild(report: LoadReport, taken: TakenOff) -> None:
    report.indexes_rebuilt = taken.index_count
    report.foreign_keys_readded = len(taken.foreign_keys)
    report.foreign_key_seconds = taken.foreign_key_seconds
    report.fallback_tables = dict(taken.fallback)
    for loaded in report.tables:
        loaded.rebuild_seconds = taken.rebuild_seconds.get(loaded.key, 0.0)


def _copy_in(
    conn: psycopg.Connection,
    location: SnapshotLocation,
    entry: TableEntry,
    environment: str,
    header: str,
    freeze: bool,
    ticker: Ticker,
    into: TableRef | None = None,
    where: sql.Composable | None = None,
) -> TableLoad:
    """COPY one snapshot file into its table (or into `into`, a staging table for masking or a
    subset, keeping only the rows `where` lets through)."""
    query = sql.SQL("COPY {table} ({cols}) FROM STDIN (FORMAT csv, HEADER {header}{freeze}){where}").format(
        table=(into or entry.ref).ident,
        cols=sql.SQL(", ").join(sql.Identifier(n) for n in entry.column_names),
        header=sql.SQL(header),
        freeze=sql.SQL(", FREEZE" if freeze else ""),
        where=sql.SQL(" WHERE {}").format(where) if where is not None else sql.SQL(""),
    )
    progress = ticker.track(f"load {environment}", entry.key, expected_bytes=entry.bytes, expected_rows=entry.rows)
    with progress, conn.cursor() as cur:
        with cur.copy(query) as copy:
            def write(chunk: bytes) -> None:
                copy.write(chunk)
                progress.advance(len(chunk))

            # A damaged object raises before its stream ends: COPY is cut off and the load rolls back.
            location.read_into(entry, write)
        rows = cur.rowcount
    # A prefiltered COPY counts the rows it kept; that every row was read is the sha256's proof.
    if rows != entry.rows and where is None:
        raise LoadVerificationError(
            f"{environment}: table {entry.key} received {rows} rows but the snapshot holds {entry.rows}. "
            "The load was rolled back; check the target's triggers and rules on this table."
        )
    return TableLoad(entry.key, rows, entry.bytes, round(progress.seconds, 3), False)


def _compare(entry: TableEntry, environment: str, checksum: str) -> None:
    if entry.content_checksum and checksum != entry.content_checksum:
        raise LoadVerificationError(
            f"{environment}: table {entry.key} differs from production after loading (checksum "
            f"{checksum} vs {entry.content_checksum}). The load was rolled back. Column types in "
            f"the target may differ from production: compare them with the manifest."
        )


def _reset_sequences(conn: psycopg.Connection, manifest: Manifest) -> list[str]:
    """Move each owned sequence to at least the loaded maximum and production's value."""
    conn.autocommit = True
    try:
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
    finally:
        conn.autocommit = False
    return [f"{name}={value}" for name, value in sorted(targets.items())]
