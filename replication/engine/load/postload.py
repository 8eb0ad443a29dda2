"""pg_restore's post-data step inside the load transaction: fresh materialized views and statistics."""

from __future__ import annotations

import psycopg
from psycopg import sql

from ..pg.catalog import TableRef


def dependent_materialized_views(conn: psycopg.Connection, tables: list[TableRef]) -> list[tuple[str, bool, bool]]:
    """Materialized views reading a loaded table (through views too), in refresh order.

    Each is (regclass text, whether the role may refresh it, whether it holds data).
    """
    rows = conn.execute(
        """
        WITH RECURSIVE deps(oid, depth) AS (
            SELECT unnest(%s::pg_catalog.regclass[])::pg_catalog.oid, 0
            UNION
            SELECT r.ev_class, d.depth + 1
            FROM pg_catalog.pg_depend dep
            JOIN pg_catalog.pg_rewrite r ON r.oid = dep.objid
            JOIN deps d ON dep.refobjid = d.oid
            WHERE dep.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
              AND dep.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
              AND r.ev_class <> d.oid AND d.depth < 20
        )
        SELECT c.oid::pg_catalog.regclass::text, pg_catalog.pg_has_role(c.relowner, 'USAGE'), c.relispopulated,
               max(deps.depth)
        FROM deps JOIN pg_catalog.pg_class c ON c.oid = deps.oid
        WHERE c.relkind = 'm'
        GROUP BY 1, 2, 3
        ORDER BY 4, 1
        """,
        ([table.ident.as_string(conn) for table in tables],),
    ).fetchall()
    return [(name, may, populated) for name, may, populated, _ in rows]


def refresh_materialized_views(conn: psycopg.Connection, tables: list[TableRef]) -> tuple[list[str], dict[str, str]]:
    """Refresh what the role may; returns the refreshed views and the skipped ones with why."""
    refreshed: list[str] = []
    skipped: dict[str, str] = {}
    for name, may_refresh, populated in dependent_materialized_views(conn, tables):
        if not populated:
            skipped[name] = "created WITH NO DATA; left unpopulated as it was"
        elif not may_refresh:
            skipped[name] = "not owned by the loading role, so it still shows the previous data"
        else:
            conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(sql.SQL(name)))
            refreshed.append(name)
    return refreshed, skipped


def analyze(conn: psycopg.Connection, tables: list[TableRef]) -> None:
    """Fresh planner statistics; on a partitioned table ANALYZE also covers its partitions."""
    conn.execute(sql.SQL("ANALYZE {}").format(sql.SQL(", ").join(table.ident for table in tables)))
