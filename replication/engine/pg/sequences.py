"""Sequences behind serial and identity columns: which they are, where they stand, where they must go.

The snapshot records production's values, the loader moves each target sequence past the loaded
rows after COMMIT, and the sequence check reads them back: all through these few queries, each
one round trip however many tables there are.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import psycopg
from psycopg import sql

from .catalog import TableRef

# Statements are built per batch of sequences: one round trip each, and no statement so large
# that planning it costs more than the round trips it saves.
BATCH = 500


@dataclass(frozen=True)
class OwnedSequence:
    table: TableRef
    column: str
    sequence: str  # schema-qualified, quoted as regclass text prints it


@dataclass(frozen=True)
class SequenceState:
    last_value: int
    is_called: bool
    increment: int

    @property
    def next_value(self) -> int:
        """What nextval would hand out."""
        return self.last_value + self.increment if self.is_called else self.last_value


def owned_sequences(conn: psycopg.Connection, tables: list[TableRef]) -> list[OwnedSequence]:
    """Sequences behind serial and identity columns of `tables`, in table then column order."""
    rows = conn.execute(
        """
        SELECT r.ord, a.attname, s.oid::pg_catalog.regclass::pg_catalog.text
        FROM unnest(%s::pg_catalog.regclass[]) WITH ORDINALITY AS r(oid, ord)
        JOIN pg_catalog.pg_depend d ON d.refobjid = r.oid
        JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'
        JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
          AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
          AND d.deptype IN ('a', 'i')
        ORDER BY r.ord, a.attnum
        """,
        ([t.ident.as_string(conn) for t in tables],),
    ).fetchall()
    return [OwnedSequence(tables[ordinal - 1], column, sequence) for ordinal, column, sequence in rows]


def _batches(items: list) -> Iterator[list]:
    for start in range(0, len(items), BATCH):
        yield items[start:start + BATCH]


def sequence_states(conn: psycopg.Connection, sequences: Iterable[str]) -> dict[str, SequenceState]:
    """last_value, is_called and increment of each sequence (regclass text), read from the sequences themselves."""
    states: dict[str, SequenceState] = {}
    for batch in _batches(sorted(set(sequences))):
        # `sequence` is regclass text, already quoted and schema-qualified by the server.
        query = sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT {name}, s.last_value, s.is_called, p.seqincrement FROM {seq} AS s, pg_catalog.pg_sequence p "
                    "WHERE p.seqrelid = {name}::pg_catalog.regclass").format(name=sql.Literal(name), seq=sql.SQL(name))
            for name in batch
        )
        for name, last_value, is_called, increment in conn.execute(query).fetchall():
            states[name] = SequenceState(int(last_value), bool(is_called), int(increment))
    return states


def loaded_maxima(conn: psycopg.Connection, owned: list[OwnedSequence]) -> dict[str, int | None]:
    """The largest value each sequence's column holds now (None for an empty table).

    Without ONLY, on purpose: an inheritance child inherits its parent's column default, so its
    rows draw from the parent's sequence too, and the sequence must pass their values as well.
    """
    maxima: dict[str, int | None] = {}
    for batch in _batches(owned):
        query = sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT {name}, (SELECT max({col})::bigint FROM {table})").format(
                name=sql.Literal(seq.sequence), col=sql.Identifier(seq.column), table=seq.table.ident)
            for seq in batch
        )
        maxima.update(dict(conn.execute(query).fetchall()))
    return maxima


def advance_sequences(conn: psycopg.Connection, targets: dict[str, int]) -> None:
    """setval each sequence to its value (is_called), in one statement per batch."""
    items = sorted(targets.items())
    for batch in _batches(items):
        conn.execute(
            "SELECT pg_catalog.setval(s::pg_catalog.regclass, v, true) FROM unnest(%s::pg_catalog.text[], %s::pg_catalog.int8[]) AS t(s, v)",
            ([name for name, _ in batch], [value for _, value in batch]),
        )
