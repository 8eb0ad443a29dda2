"""Private temporary tables that a load stages rows in before they reach the real table.

A temporary table lives in the session's own schema: no other role sees production's unmasked
values there, and ON COMMIT DROP removes it with the transaction, whatever happens.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from .catalog import TableRef


def staging_table(conn: psycopg.Connection, name: str, like: TableRef, columns: sql.Composable) -> TableRef:
    """An empty temporary table `name` with `columns` (a select list over `like`), dropped at COMMIT."""
    conn.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
        sql.Identifier(name), columns, like.ident))
    return TableRef("pg_temp", name)
