"""Read-only audits of a loaded environment, behind the asset checks the UI shows.

Each returns what it found, table by table, so a check can pass or fail with the evidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from .catalog import TableRef, owned_sequences
from .manifest import Manifest
from .verify import content_checksum


@dataclass(frozen=True)
class TableAudit:
    table: str
    rows: int
    expected_rows: int
    checksum_matches: bool

    @property
    def ok(self) -> bool:
        return self.rows == self.expected_rows and self.checksum_matches


def compare_with_manifest(conn: psycopg.Connection, manifest: Manifest) -> list[TableAudit]:
    """Row count and content checksum of every snapshot table in the target, against the manifest."""
    found = []
    for entry in manifest.tables:
        rows, checksum = content_checksum(conn, entry.ref, entry.column_names)
        matches = checksum == entry.content_checksum if entry.content_checksum else True
        found.append(TableAudit(entry.key, rows, entry.rows, matches))
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
