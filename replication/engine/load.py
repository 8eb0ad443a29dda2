"""Load a verified snapshot into one target database in a single transaction."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import IsolationLevel, sql

from .catalog import foreign_key_order, foreign_key_parents, owned_sequences, table_columns, table_exists
from .errors import LoadVerificationError, SchemaMismatchError
from .files import read_chunks
from .manifest import Manifest, TableEntry
from .progress import Log, Progress
from .verify import content_checksum


@dataclass
class TableLoad:
    key: str
    rows: int
    bytes: int
    seconds: float
    checksum_verified: bool


@dataclass
class LoadReport:
    environment: str
    tables: list[TableLoad] = field(default_factory=list)
    sequences_reset: list[str] = field(default_factory=list)
    deferred_constraints: bool = False
    seconds: float = 0.0

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
    log: Log | None = None,
) -> LoadReport:
    """Replace the replicated tables of `conn` with the snapshot, all or nothing.

    TRUNCATE, every COPY and the row and checksum checks share one transaction: any error rolls it
    back and the environment keeps its previous data; readers wait on TRUNCATE's lock rather than
    seeing a partial load. Sequences are set only after COMMIT, because setval is not
    transactional and must not move when the load rolls back.
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
    conn.rollback()  # end the read-only catalog transaction before the write transaction
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{lock_timeout_seconds}s")))
        if cyclic:
            # Foreign keys form a cycle: no order satisfies them row by row, so check at COMMIT.
            conn.execute("SET CONSTRAINTS ALL DEFERRED")
            report.deferred_constraints = True
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(ref.ident for ref in order)))
        for ref in order:
            report.tables.append(_copy_in(conn, snapshot_dir, entries[ref], environment, header, log))
        if verify_checksums:
            for ref, loaded in zip(order, report.tables):
                _verify_checksum(conn, entries[ref], environment)
                loaded.checksum_verified = True
    report.sequences_reset = _reset_sequences(conn, manifest)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _copy_in(
    conn: psycopg.Connection, snapshot_dir: Path, entry: TableEntry, environment: str, header: str, log: Log | None
) -> TableLoad:
    query = sql.SQL("COPY {table} ({cols}) FROM STDIN (FORMAT csv, HEADER {header})").format(
        table=entry.ref.ident,
        cols=sql.SQL(", ").join(sql.Identifier(n) for n in entry.column_names),
        header=sql.SQL(header),
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
    if not entry.content_checksum:
        return
    _, checksum = content_checksum(conn, entry.ref, entry.column_names)
    if checksum != entry.content_checksum:
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
