"""Rows an environment owns (`keep:`), carried across each refresh inside the load's transaction.

Read into private temporary tables before anything is truncated; written back once production's
rows are in and verified: a kept row's values replace those of a production row with the same
primary key (the collisions are counted; rows referencing that key still find it), and a kept row whose foreign key points at a parent the new data lacks
stops the load before anything changes, naming the table, the key and the constraint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from ..errors import ConfigurationError, ReplicationError
from ..pg.catalog import ForeignKeyEdge, TableRef, foreign_keys
from ..subset.plan import primary_keys

KEEP_ALL = "all"


class KeptRowError(ReplicationError):
    """A kept row cannot go back: its foreign key points at a row the new data lacks."""


@dataclass
class KeptTable:
    table: TableRef
    condition: str
    primary_key: list[str]
    foreign_keys: list[ForeignKeyEdge]
    staged: TableRef | None = None
    rows: int = 0
    collisions: int = 0


@dataclass
class KeepPlan:
    """What `keep:` asks of one environment, checked against its catalog before the load."""

    whole: list[str] = field(default_factory=list)  # never replaced
    tables: list[KeptTable] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.whole or self.tables)


def plan_keep(conn: psycopg.Connection, environment: str, rules: dict[str, str], loaded: list[TableRef]) -> KeepPlan:
    """Each rule against the snapshot's tables and the environment's catalog; a condition is
    planned (EXPLAIN) so a typo fails here, before anything is written."""
    plan = KeepPlan()
    by_key = {ref.key: ref for ref in loaded}
    for key, rule in rules.items():
        ref = by_key.get(key)
        if ref is None:
            raise ConfigurationError(
                f"{environment}: keep names {key}, which is not a table of the snapshot ({len(loaded)} tables). "
                f"Fix environments.{environment}.keep in replication.yaml. Nothing was written.")
        if rule == KEEP_ALL:
            plan.whole.append(key)
            continue
        try:
            with conn.transaction():
                conn.execute(sql.SQL("EXPLAIN SELECT 1 FROM ONLY {} WHERE {}").format(ref.ident, sql.SQL(rule)))
        except psycopg.Error as exc:
            raise ConfigurationError(
                f"{environment}: the keep condition for {key} is not a valid condition on its rows "
                f"({exc.diag.message_primary}). Fix environments.{environment}.keep in replication.yaml. "
                "Nothing was written.") from None
        plan.tables.append(KeptTable(ref, rule, [], []))
    if plan.tables:
        refs = [kept.table for kept in plan.tables]
        keys = primary_keys(conn, refs)
        edges = foreign_keys(conn, refs)
        for kept in plan.tables:
            kept.primary_key = keys.get(kept.table, [])
            kept.foreign_keys = [e for e in edges if e.child == kept.table]
    return plan


def read_kept_rows(conn: psycopg.Connection, plan: KeepPlan) -> None:
    """The rows to keep into temporary tables (dropped at COMMIT), before the tables are emptied."""
    for number, kept in enumerate(plan.tables):
        kept.staged = TableRef("pg_temp", f"replication_keep_{number}")
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT * FROM ONLY {} WHERE {}").format(
                sql.Identifier(kept.staged.name), kept.table.ident, sql.SQL(kept.condition)))
            kept.rows = cur.rowcount


def write_kept_rows(conn: psycopg.Connection, environment: str, plan: KeepPlan, order: list[TableRef],
                    target: Callable[[TableRef], TableRef] = lambda ref: ref) -> None:
    """Every kept row back, parents first, into `target(table)` (a swap's new copy, or the table
    itself); a production row with a kept row's key gives way."""
    rank = {ref: n for n, ref in enumerate(order)}
    for kept in sorted(plan.tables, key=lambda k: rank.get(k.table, len(rank))):
        _require_parents(conn, environment, kept, target)
        table = target(kept.table)
        columns = _shared_columns(conn, kept, table)
        names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        insert = sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {}").format(
            table.ident, names, names, sql.Identifier(kept.staged.name))
        if kept.primary_key and all(c in columns for c in kept.primary_key):
            # A production row with the key takes the kept row's values in place (an UPDATE, not a
            # DELETE): rows that reference it keep pointing at the same key.
            others = [c for c in columns if c not in kept.primary_key]
            action = sql.SQL("DO UPDATE SET {}").format(sql.SQL(", ").join(
                sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in others)) if others \
                else sql.SQL("DO NOTHING")
            updated = conn.execute(sql.SQL("{} ON CONFLICT ({}) {} RETURNING xmax::text <> '0'").format(
                insert, sql.SQL(", ").join(sql.Identifier(c) for c in kept.primary_key), action)).fetchall()
            kept.collisions = sum(1 for (was_there,) in updated if was_there) + (kept.rows - len(updated))
        else:
            conn.execute(insert)


def _shared_columns(conn: psycopg.Connection, kept: KeptTable, table: TableRef) -> list[str]:
    """The kept rows' columns the table still has (schema: production may have dropped some), less
    generated ones, which the table computes."""
    rows = conn.execute(
        """SELECT a.attname FROM pg_catalog.pg_attribute a
           WHERE a.attrelid = %s::pg_catalog.regclass AND a.attnum > 0 AND NOT a.attisdropped
             AND a.attgenerated = ''
             AND a.attname IN (SELECT b.attname FROM pg_catalog.pg_attribute b
                               WHERE b.attrelid = %s::pg_catalog.regclass AND b.attnum > 0 AND NOT b.attisdropped)
           ORDER BY a.attnum""",
        [table.ident.as_string(conn), kept.staged.ident.as_string(conn)]).fetchall()
    return [name for (name,) in rows]


def _require_parents(conn: psycopg.Connection, environment: str, kept: KeptTable,
                     target: Callable[[TableRef], TableRef]) -> None:
    """Each foreign key of a kept row must find its parent among the new rows (or, for a key into its
    own table, among the kept rows too)."""
    for edge in kept.foreign_keys:
        child = sql.SQL(", ").join(sql.SQL("k.{}").format(sql.Identifier(c)) for c in edge.child_columns)
        parent = sql.SQL(", ").join(sql.SQL("p.{}").format(sql.Identifier(c)) for c in edge.parent_columns)
        not_null = sql.SQL(" AND ").join(sql.SQL("k.{} IS NOT NULL").format(sql.Identifier(c))
                                         for c in edge.child_columns)
        sources = [sql.SQL("SELECT {} FROM {} p WHERE ({}) = ({})").format(
            parent, target(edge.parent).ident, parent, child)]
        if edge.parent == kept.table:
            sources.append(sql.SQL("SELECT {} FROM {} p WHERE ({}) = ({})").format(
                parent, sql.Identifier(kept.staged.name), parent, child))
        exists = sql.SQL(" OR ").join(sql.SQL("EXISTS ({})").format(s) for s in sources)
        (missing,) = conn.execute(sql.SQL("SELECT count(*) FROM {} k WHERE {} AND NOT ({})").format(
            sql.Identifier(kept.staged.name), not_null, exists)).fetchone()
        if missing:
            raise KeptRowError(
                f"{environment}: {missing} kept row(s) of {kept.table.key} have a foreign key "
                f"({', '.join(edge.child_columns)}, constraint {edge.name}) pointing at {edge.parent.key} rows "
                f"that the new data lacks. Nothing was changed: keep those parents too "
                f"(environments.{environment}.keep), or narrow the condition for {kept.table.key}.")
