"""Read-only audits of a loaded environment, behind the asset checks the UI shows.

Each returns what it found, table by table, so a check can pass or fail with the evidence.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from .catalog import TableRef, owned_sequences
from .checksum import checksum_algorithm, content_checksum
from .manifest import Manifest


@dataclass(frozen=True)
class TableAudit:
    table: str
    rows: int
    expected_rows: int
    checksum_matches: bool

    @property
    def ok(self) -> bool:
        return self.rows == self.expected_rows and self.checksum_matches


def compare_with_manifest(
    conn: psycopg.Connection, manifest: Manifest, loaded_checksums: dict[str, str] | None = None
) -> list[TableAudit]:
    """Row count and content checksum of every snapshot table in the target, against the manifest.

    A masked table's checksum is compared with the one recorded right after its load instead
    (`loaded_checksums`), since masking changes it on purpose.
    """
    loaded_checksums = loaded_checksums or {}
    found = []
    for entry in manifest.tables:
        expected = loaded_checksums.get(entry.key, entry.content_checksum)
        rows, checksum = content_checksum(conn, entry.ref, entry.column_names, algorithm=checksum_algorithm(expected))
        found.append(TableAudit(entry.key, rows, entry.rows, checksum == expected if expected else True))
    return found


@dataclass(frozen=True)
class SequenceAudit:
    sequence: str
    table: str
    column: str
    next_value: int
    loaded_max: int | None

    @property
    def ok(self) -> bool:
        return self.loaded_max is None or self.next_value > self.loaded_max


def sequence_positions(conn: psycopg.Connection, tables: list[TableRef]) -> list[SequenceAudit]:
    """For each serial or identity column: the value nextval would give and the loaded maximum."""
    found = []
    for table in tables:
        for seq in owned_sequences(conn, table):
            last_value, is_called = conn.execute(
                sql.SQL("SELECT last_value, is_called FROM {}").format(sql.SQL(seq.sequence))
            ).fetchone()
            increment = conn.execute(
                "SELECT seqincrement FROM pg_catalog.pg_sequence WHERE seqrelid = %s::pg_catalog.regclass",
                (seq.sequence,),
            ).fetchone()[0]
            loaded_max = conn.execute(
                sql.SQL("SELECT max({})::bigint FROM {}").format(sql.Identifier(seq.column), table.ident)
            ).fetchone()[0]
            next_value = last_value + increment if is_called else last_value
            found.append(SequenceAudit(seq.sequence, table.key, seq.column, int(next_value), loaded_max))
    return found


@dataclass(frozen=True)
class OrphanAudit:
    constraint: str
    table: str
    references: str
    orphans: int


def orphaned_rows(conn: psycopg.Connection, tables: list[TableRef]) -> list[OrphanAudit]:
    """Rows whose foreign key (touching a loaded table) points at no row, MATCH SIMPLE semantics.

    A validated foreign key cannot have any; a NOT VALID one, or one someone dropped and re-added
    NOT VALID, can. Each is counted with one anti-join.
    """
    rows = conn.execute(
        """
        SELECT k.conname, k.conrelid::pg_catalog.regclass::text, k.confrelid::pg_catalog.regclass::text,
               ARRAY(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY u(n, i)
                     JOIN pg_catalog.pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.i),
               ARRAY(SELECT a.attname FROM unnest(k.confkey) WITH ORDINALITY u(n, i)
                     JOIN pg_catalog.pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n ORDER BY u.i)
        FROM pg_catalog.pg_constraint k
        WHERE k.contype = 'f' AND k.conparentid = 0
          AND (k.conrelid = ANY(%(t)s::pg_catalog.regclass[]) OR k.confrelid = ANY(%(t)s::pg_catalog.regclass[]))
        ORDER BY 2, 1
        """,
        {"t": [t.ident.as_string(conn) for t in tables]},
    ).fetchall()
    found = []
    for name, child, parent, child_cols, parent_cols in rows:
        match = sql.SQL(" AND ").join(
            sql.SQL("p.{} = c.{}").format(sql.Identifier(pc), sql.Identifier(cc)) for cc, pc in zip(child_cols, parent_cols)
        )
        not_null = sql.SQL(" AND ").join(sql.SQL("c.{} IS NOT NULL").format(sql.Identifier(cc)) for cc in child_cols)
        count = conn.execute(
            sql.SQL("SELECT count(*) FROM {} c WHERE {} AND NOT EXISTS (SELECT 1 FROM {} p WHERE {})").format(
                sql.SQL(child), not_null, sql.SQL(parent), match
            )
        ).fetchone()[0]
        found.append(OrphanAudit(name, child, parent, int(count)))
    return found


@dataclass(frozen=True)
class MaskAudit:
    column: str
    compared: int  # distinct production values, NULL and empty left out
    equal: int  # of those, how many the environment still holds in that column


def _value_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def masked_value_overlaps(
    conn: psycopg.Connection, snapshot_dir: Path, manifest: Manifest, masked: dict[str, list[str]]
) -> list[MaskAudit]:
    """For every masked column: how many production values the environment still holds there.

    Production's values are read from the snapshot file, hashed here, and only the hashes are
    copied (streamed) into a temporary table on the target, which compares them with hashes of its
    own values in SQL. Memory stays bounded by the COPY buffer; no production value is sent.
    """
    found = []
    entries = {e.key: e for e in manifest.tables}
    with conn.transaction(force_rollback=True):
        conn.execute("CREATE TEMP TABLE replication_prod_hashes (col int, h text) ON COMMIT DROP")
        for table, columns in masked.items():
            entry = entries[table]
            positions = [entry.column_names.index(c) for c in columns]
            conn.execute("TRUNCATE replication_prod_hashes")
            with open(snapshot_dir / entry.file, newline="", encoding="utf-8") as handle, conn.cursor() as cur:
                reader = csv.reader(handle)
                next(reader)  # header
                with cur.copy("COPY replication_prod_hashes (col, h) FROM STDIN") as copy:
                    for row in reader:
                        for slot, position in enumerate(positions):
                            if row[position] != "":
                                copy.write_row((slot, _value_hash(row[position])))
            for slot, column in enumerate(columns):
                compared, equal = conn.execute(
                    sql.SQL(
                        "WITH prod AS (SELECT DISTINCT h FROM replication_prod_hashes WHERE col = {slot}), "
                        "env AS (SELECT DISTINCT pg_catalog.left(pg_catalog.encode(pg_catalog.sha256("
                        "pg_catalog.convert_to(t.{col}::text, 'UTF8')), 'hex'), 16) AS h FROM {table} t "
                        "WHERE t.{col} IS NOT NULL AND t.{col}::text <> '') "
                        "SELECT (SELECT count(*) FROM prod), (SELECT count(*) FROM prod JOIN env USING (h))"
                    ).format(slot=sql.Literal(slot), col=sql.Identifier(column), table=entry.ref.ident)
                ).fetchone()
                found.append(MaskAudit(f"{table}.{column}", int(compared), int(equal)))
    return found
