"""How many of production's values a masked column still holds: the evidence that a rule changed them.

One count for the load and the check alike. Both sides are compared as the first 16 hex digits of
the sha256 of each value's text: enough to tell values apart, too few to recover one, and the same
whether production's values sit in the load's staging table or were hashed from the snapshot by
the check, which never sends a production value to the environment.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from ..pg.catalog import TableRef

HASH_HEX_CHARS = 16


def value_hash(value: sql.Composable) -> sql.Composable:
    """The hash `count_overlap` compares, of one value's text; what the check computes in Python too."""
    return sql.SQL("pg_catalog.left(pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to({}::pg_catalog.text, "
                   "'UTF8')), 'hex'), {})").format(value, sql.Literal(HASH_HEX_CHARS))


def staged_values(staging: TableRef, column: str) -> sql.Composable:
    """Production's values of `column` in a staging table (NULL and empty left out), hashed, as column `h`."""
    col = sql.SQL("s.{}").format(sql.Identifier(column))
    return sql.SQL("SELECT {} AS h FROM {} s WHERE {} IS NOT NULL AND {}::pg_catalog.text <> ''").format(
        value_hash(col), staging.ident, col, col)


def count_overlap(conn: psycopg.Connection, production: sql.Composable, table: sql.Composable,
                  column: str) -> list[int]:
    """[distinct production values, how many of them `column` of `table` still holds].

    `production` is a query whose column `h` holds the hashes of production's non-empty values.
    """
    col = sql.SQL("t.{}").format(sql.Identifier(column))
    compared, equal = conn.execute(sql.SQL(
        "WITH prod AS (SELECT DISTINCT h FROM ({production}) p), "
        "env AS (SELECT DISTINCT {hashed} AS h FROM {table} t WHERE {col} IS NOT NULL AND {col}::pg_catalog.text <> '') "
        "SELECT (SELECT count(*) FROM prod), (SELECT count(*) FROM prod JOIN env USING (h))"
    ).format(production=production, hashed=value_hash(col), table=table, col=col)).fetchone()
    return [int(compared), int(equal)]
