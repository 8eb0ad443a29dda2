"""Load a verified snapshot into one target database in a single transaction."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import IsolationLevel, sql

from .catalog import (
    TableRef,
    foreign_key_order,
    foreign_key_parents,
    is_partitioned,
    owned_sequences,
    table_columns,
    table_exists,
)
from .checksum import checksum_algorithm, content_checksum, content_checksums
from .errors import ConfigurationError, LoadVerificationError, SchemaMismatchError
from .files import read_chunks
from .manifest import Manifest, TableEntry
from .mask import ColumnInfo, MaskRule, check_rules, foreign_key_gaps, mask_expression, set_key
from .postload import analyze, refresh_materialized_views
from .progress import Log, Progress
from .rebuild import TakenOff, put_back, take_off


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
    # Masked tables cannot be compared with production's checksum; their checksum as loaded is
    # kept instead, so a later check can tell whether anything changed since.
    masked_table_checksums: dict[str, str] = field(default_factory=dict)

    @property
    def total_rows(self) -> int:
        return sum(t.rows for t in self.tables)

    @property
    def total_bytes(self) -> int:
        return sum(t.bytes for t in self.tables)


def check_target_schema(conn: psycopg.Connection, manifest: Manifest, environment: str) -> None:
    """Fail before any write when the target cannot take the snapshot's tables and columns.

    The target's own migrations own its schema; this only reads the catalog.
    """
    for entry in manifest.tables:
        ref = entry.ref
        if not table_exists(conn, ref):
            raise SchemaMismatchError(
                f"{environment}: table {ref.key} does not exist in the target database. Create it "
                f"with the {environment} migrations, or exclude it from prod_snapshot. Nothing was written."
            )
        target = {c.name: c for c in table_columns(conn, ref)}
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


def load_snapshot(
    conn: psycopg.Connection,
    snapshot_dir: Path,
    manifest: Manifest,
    *,
    environment: str,
    verify_checksums: bool = True,
    lock_timeout_seconds: int = 60,
    rebuild_indexes: bool = True,
    masks: dict[str, dict[str, MaskRule]] | None = None,
    masking_key: str | None = None,
    log: Log | None = None,
) -> LoadReport:
    """Replace the replicated tables of `conn` with the snapshot, all or nothing, in pg_restore's order.

    One transaction: foreign keys, keys and indexes of the loaded tables are recorded and dropped,
    the tables truncated, every file copied in, keys and indexes rebuilt, foreign keys re-added
    validated, row counts and checksums compared, dependent materialized views refreshed and the
    tables analyzed. Any error rolls it all back: the environment keeps its previous data and
    definitions, and readers wait on the locks rather than seeing a partial load. Sequences are
    set only after COMMIT, because setval is not transactional and must not move on a rollback.
    `rebuild_indexes=False` keeps indexes in place during COPY (the slower path, for comparison).
    `masks` ({schema.table: {column: rule}}) masks those columns on the way in (see engine.mask);
    their checksums are then compared on the unmasked columns only.
    """
    started = time.monotonic()
    report = LoadReport(environment)
    conn.rollback()
    conn.autocommit = False
    conn.isolation_level = IsolationLevel.READ_COMMITTED
    conn.read_only = False
    entries = {entry.ref: entry for entry in manifest.tables}
    check_target_schema(conn, manifest, environment)
    order, cyclic = foreign_key_order(foreign_key_parents(conn, list(entries)))
    header = "MATCH" if conn.info.server_version >= 150000 else "true"
    masks = masks or {}
    mask_columns = _check_masks(conn, environment, entries, masks, masking_key)
    report.masked_columns = {f"{table}.{col}": rule.describe() for table, rules in masks.items() for col, rule in rules.items()}
    expected_unmasked: dict[TableRef, tuple[list[str], str]] = {}
    conn.rollback()  # end the read-only catalog transaction before the write transaction
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{lock_timeout_seconds}s")))
        if masking_key:
            set_key(conn, masking_key)
        if cyclic:
            # Foreign keys that stay in place (tables not ours to alter) may form a cycle: no
            # order satisfies them row by row, so they are checked at COMMIT.
            conn.execute("SET CONSTRAINTS ALL DEFERRED")
            report.deferred_constraints = True
        # Before TRUNCATE: an outside table's foreign key to a loaded table would make it refuse.
        taken = take_off(conn, order) if rebuild_indexes else TakenOff()
        _log_fallbacks(taken, environment, log)
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(ref.ident for ref in order)))
        for number, ref in enumerate(order):
            entry = entries[ref]
            if entry.key in masks:
                loaded, expected = _copy_masked(conn, snapshot_dir, entry, environment, header, masks[entry.key],
                                                mask_columns[entry.key], number, verify_checksums, log)
                report.tables.append(loaded)
                expected_unmasked[ref] = expected
                continue
            # FREEZE writes rows already frozen, sparing a later VACUUM; PostgreSQL allows it
            # on plain tables truncated in this transaction.
            freeze = rebuild_indexes and not is_partitioned(conn, ref)
            report.tables.append(_copy_in(conn, snapshot_dir, entry, environment, header, freeze, log))
        put_back(conn, taken)
        _record_rebuild(report, taken)
        if verify_checksums:
            verify_started = time.monotonic()
            for ref, loaded in zip(order, report.tables):
                if ref in expected_unmasked:
                    report.masked_table_checksums[entries[ref].key] = _verify_masked(
                        conn, entries[ref], environment, *expected_unmasked[ref])
                else:
                    _verify_checksum(conn, entries[ref], environment)
                loaded.checksum_verified = True
            report.verify_seconds = round(time.monotonic() - verify_started, 3)
        report.materialized_views_refreshed, report.materialized_views_skipped = refresh_materialized_views(conn, order)
        analyze(conn, order)
    report.sequences_reset = _reset_sequences(conn, manifest)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _check_masks(
    conn: psycopg.Connection, environment: str, entries: dict, masks: dict[str, dict[str, MaskRule]], key: str | None
) -> dict[str, dict[str, ColumnInfo]]:
    """Validate the masking policy against the target's catalog, before the write transaction."""
    by_key = {entry.key: entry for entry in entries.values()}
    columns: dict[str, dict[str, ColumnInfo]] = {}
    for table, rules in masks.items():
        entry = by_key.get(table)
        if entry is None:
            raise ConfigurationError(
                f"{environment}: the masking policy names table {table}, which is not in the snapshot. "
                "Fix the mask keys in replication.yaml or the snapshot selection."
            )
        for column in rules:
            if column not in entry.column_names:
                raise ConfigurationError(
                    f"{environment}: the masking policy names {table}.{column}, which the snapshot does not "
                    f"hold (its columns: {', '.join(entry.column_names)}). Fix the key in replication.yaml."
                )
        columns[table] = check_rules(conn, environment, entry.ref, rules)
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
    snapshot_dir: Path,
    entry: TableEntry,
    environment: str,
    header: str,
    rules: dict[str, MaskRule],
    columns: dict[str, ColumnInfo],
    number: int,
    verify: bool,
    log: Log | None,
) -> tuple[TableLoad, tuple[list[str], str]]:
    """COPY into a private temporary table, then INSERT the masked rows into the real one."""
    staging = TableRef("pg_temp", f"replication_masked_{number}")
    names = entry.column_names
    cols = sql.SQL(", ").join(sql.Identifier(n) for n in names)
    conn.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
        sql.Identifier(staging.name), cols, entry.ref.ident))
    loaded = _copy_in(conn, snapshot_dir, entry, environment, header, False, log, into=staging)
    unmasked = [n for n in names if n not in rules]
    expected = ""
    if verify:
        # The staged rows are production's exactly; then the unmasked columns must survive as they
        # are. One read of the staging table gives both checksums.
        algorithm = checksum_algorithm(entry.content_checksum)
        full, kept = content_checksums(conn, staging, [names, unmasked], algorithm=algorithm)
        _compare(entry, environment, full[1])
        expected = kept[1] if unmasked else ""
    values = sql.SQL(", ").join(
        mask_expression(rules[n], columns[n]) if n in rules else sql.Identifier(n) for n in names
    )
    with conn.cursor() as cur:
        cur.execute(sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {}").format(
            entry.ref.ident, cols, values, sql.Identifier(staging.name)))
        inserted = cur.rowcount
    if inserted != entry.rows:
        raise LoadVerificationError(
            f"{environment}: table {entry.key} received {inserted} masked rows but the snapshot holds {entry.rows}. "
            "The load was rolled back; check the target's triggers and rules on this table."
        )
    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(staging.name)))
    return loaded, (unmasked, expected)


def _verify_masked(conn: psycopg.Connection, entry: TableEntry, environment: str, unmasked: list[str], expected: str) -> str:
    """Check the unmasked columns against production's; return the whole table's checksum as loaded."""
    kept, full = content_checksums(conn, entry.ref, [unmasked, entry.column_names], algorithm=checksum_algorithm(expected))
    if unmasked and expected and kept[1] != expected:
        raise LoadVerificationError(
            f"{environment}: the unmasked columns of {entry.key} differ from production after masking "
            f"(checksum {kept[1]} vs {expected}). The load was rolled back."
        )
    return full[1]


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
    snapshot_dir: Path,
    entry: TableEntry,
    environment: str,
    header: str,
    freeze: bool,
    log: Log | None,
    into: TableRef | None = None,
) -> TableLoad:
    """COPY one snapshot file into its table (or into `into`, a staging table for masking)."""
    query = sql.SQL("COPY {table} ({cols}) FROM STDIN (FORMAT csv, HEADER {header}{freeze})").format(
        table=(into or entry.ref).ident,
        cols=sql.SQL(", ").join(sql.Identifier(n) for n in entry.column_names),
        header=sql.SQL(header),
        freeze=sql.SQL(", FREEZE" if freeze else ""),
    )
    progress = Progress(
        log, f"load {environment}", entry.key, expected_bytes=entry.bytes, expected_rows=entry.rows
    )
    with progress, conn.cursor() as cur:
        with cur.copy(query) as copy:
            for chunk in read_chunks(snapshot_dir / entry.file):
                copy.write(chunk)
                progress.advance(len(chunk))
        rows = cur.rowcount
    if rows != entry.rows:
        raise LoadVerificationError(
            f"{environment}: table {entry.key} received {rows} rows but the snapshot holds {entry.rows}. "
            "The load was rolled back; check the target's triggers and rules on this table."
        )
    return TableLoad(entry.key, rows, entry.bytes, round(progress.seconds, 3), False)


def _verify_checksum(conn: psycopg.Connection, entry: TableEntry, environment: str) -> None:
    if entry.content_checksum:
        algorithm = checksum_algorithm(entry.content_checksum)
        _compare(entry, environment, content_checksum(conn, entry.ref, entry.column_names, algorithm=algorithm)[1])


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
    reset: list[str] = []
    try:
        for entry in manifest.tables:
            source = {s.column: s for s in entry.sequences}
            for seq in owned_sequences(conn, entry.ref):
                loaded_max = conn.execute(
                    sql.SQL("SELECT max({col})::bigint FROM {table}").format(
                        col=sql.Identifier(seq.column), table=entry.ref.ident
                    )
                ).fetchone()[0]
                prod = source.get(seq.column)
                candidates = [v for v in (loaded_max, prod.last_value if prod and prod.is_called else None) if v is not None]
                if not candidates:
                    continue
                conn.execute("SELECT pg_catalog.setval(%s::regclass, %s, true)", (seq.sequence, max(candidates)))
                reset.append(f"{seq.sequence}={max(candidates)}")
    finally:
        conn.autocommit = False
    return reset
