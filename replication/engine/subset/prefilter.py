"""COPY ... WHERE conditions that let a subset load skip, as it reads a file, most rows it will not keep.

A subset load parses every row of the snapshot, but storing, marking and re-reading the 95% it
drops cost more than parsing them. In an acyclic subset, a table's kept rows are those its own
percent rule selects and those referencing a selected row of a table staged before it. Both can
be tested on each row as COPY reads it, where no subquery is allowed:

- a percent rule is a pure function of the row's key: the rule's own condition;
- a reference to a selected row is tested against a bitmap of the selected rows' keys, hashed:
  every referencing row passes (equal text, equal hash), and a few others (about 1 in 100) whose
  hash collides. Those few are staged and then dropped by the exact marking that follows.

A table that may have to hold rows kept only as parents, a where rule (written against typed
columns) and keys that do not compare as text are staged whole, as before.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from ..pg.catalog import ForeignKeyEdge, TableRef
from .plan import MARK, SELECTED, SubsetPlan, joins_as_text, rule_condition

# Bits per selected key: a colliding row passes with a probability of about 1/64 to 1/128.
BITS_PER_KEY = 64
MIN_BITS = 1 << 13
# The bitmap travels in the COPY statement as hex: at most 2 MiB of bits (4 MiB of text). Beyond
# 256k selected keys more rows collide, and pass to the exact marking.
MAX_BITS = 1 << 24
WORD_BITS = 64


def prefilterable(plan: SubsetPlan, ref: TableRef) -> bool:
    """Whether every row `ref` can keep is known, from its parents already marked, as it is read."""
    if plan.cyclic or ref not in plan.as_text or any(e.parent == ref for e in plan.pulls):
        return False
    rule = plan.rules.get(ref)
    if rule is not None and rule.percent is None:
        return False
    return all(joins_as_text(plan, e, cc, pc) for e in plan.into(ref)
               for cc, pc in zip(e.child_columns, e.parent_columns))


def prefilter(conn: psycopg.Connection, plan: SubsetPlan, ref: TableRef, staged: dict[TableRef, TableRef],
              bitmaps: dict | None = None) -> sql.Composable | None:
    """The COPY ... WHERE condition for staging `ref`, or None to stage it whole.

    Every table `ref` references inside the subset must be staged and marked already. `bitmaps`
    keeps each parent key's bitmap for the next table that references the same key.
    """
    if not prefilterable(plan, ref) or any(e.parent not in staged for e in plan.into(ref)):
        return None
    terms = []
    if ref in plan.rules:
        terms.append(rule_condition(plan, ref, plan.rules[ref], ref))
    bitmaps = {} if bitmaps is None else bitmaps
    for edge in plan.into(ref):
        key = (edge.parent, tuple(edge.parent_columns))
        if key not in bitmaps:
            bitmaps[key] = _selected_bitmap(conn, edge, staged[edge.parent])
        bits, bitmap = bitmaps[key]
        terms.append(sql.SQL("pg_catalog.get_bit({}, {}) = 1").format(bitmap, _key_hash(edge.child_columns, bits))
                     if bits else sql.SQL("false"))
    return sql.SQL(" OR ").join(sql.SQL("({})").format(t) for t in terms)


def _key_hash(columns: tuple[str, ...] | list[str], bits: int) -> sql.Composable:
    # A composite key XORs its columns' hashes (cheaper per row than hashing them joined). A NULL
    # in any column gives NULL: such a row references nothing through this key, and is not kept
    # by it, exactly as the marking's equality join decides.
    hashed = sql.SQL(" # ").join(sql.SQL("pg_catalog.hashtext({})").format(sql.Identifier(c)) for c in columns)
    return sql.SQL("(({}) & {})").format(hashed, sql.Literal(bits - 1))


def _selected_bitmap(conn: psycopg.Connection, edge: ForeignKeyEdge, parent: TableRef) -> tuple[int, sql.Composable]:
    """(bits, the bitmap as a literal) of the selected parent rows' hashed keys; (0, NULL) for none."""
    (selected,) = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE {} = {}").format(
        parent.ident, sql.Identifier(MARK), sql.Literal(SELECTED))).fetchone()
    if not selected:
        return 0, sql.SQL("NULL")
    bits = min(max(MIN_BITS, 1 << (selected * BITS_PER_KEY - 1).bit_length()), MAX_BITS)
    # Built in the server as 64-bit words, left to right as a bit string numbers its bits; the
    # parent's keys never leave it.
    (words,) = conn.execute(sql.SQL(
        "SELECT pg_catalog.string_agg(pg_catalog.lpad(pg_catalog.to_hex(coalesce(w.bits, 0)), 16, '0'), '' "
        "ORDER BY n.word) FROM pg_catalog.generate_series(0, {last}) n(word) LEFT JOIN ("
        "SELECT h >> 6 AS word, pg_catalog.bit_or(1::pg_catalog.int8 << (63 - (h & 63))) AS bits "
        "FROM (SELECT {hash} AS h FROM {parent} WHERE {mark} = {selected}) k GROUP BY 1) w ON w.word = n.word").format(
        last=sql.Literal(bits // WORD_BITS - 1), hash=_key_hash(edge.parent_columns, bits), parent=parent.ident,
        mark=sql.Identifier(MARK), selected=sql.Literal(SELECTED))).fetchone()
    return bits, sql.SQL("{}::pg_catalog.varbit").format(sql.Literal("x" + words))
