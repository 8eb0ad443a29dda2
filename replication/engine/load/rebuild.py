"""Keys, indexes and foreign keys taken off the loaded tables before COPY and put back exactly after.

This is pg_restore's order: data into bare tables, then indexes and keys built once from sorted
data, then foreign keys validated in one pass each, instead of per-row index upkeep and per-row
foreign-key triggers. Everything runs inside the load's transaction (DDL in PostgreSQL is
transactional), so a failure anywhere puts every definition back as it was.

Definitions are recorded with `pg_get_indexdef` and `pg_get_constraintdef` on a connection whose
search_path is `pg_catalog`, so every name in them is schema-qualified. Partitioned indexes are
rebuilt as pg_dump does: the parent `ON ONLY`, each partition's own index under its own name,
then `ALTER INDEX ... ATTACH PARTITION`, so names below the parent come back too.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from ..pg.catalog import TableRef, foreign_keys, partition_tree, quote_ident


@dataclass
class IndexNode:
    """One index in a (possibly partitioned) index tree, with the constraint it backs, if any."""

    oid: int
    name: str  # regclass text: schema-qualified and quoted
    short_name: str  # the index's own name, unquoted
    table: str  # regclass text of the indexed table
    table_key: str  # schema.table of the indexed table, as people read it
    definition: str
    constraint: str | None  # constraint name, unquoted
    constraint_def: str | None
    parent: str | None  # regclass text of the parent index, for partitions' indexes
    depth: int
    tablespace: str | None
    replica_identity: bool
    clustered: bool
    comment: str | None
    constraint_comment: str | None


@dataclass
class ForeignKey:
    name: str
    table: str  # regclass text of the referencing table
    definition: str
    comment: str | None


@dataclass
class ConstraintTrigger:
    name: str
    table: str
    enabled: str  # pg_trigger.tgenabled: O, D, R or A


@dataclass
class TakenOff:
    """What was removed from the target for the load, in the order it must come back."""

    foreign_keys: list[ForeignKey] = field(default_factory=list)
    trees: list[list[IndexNode]] = field(default_factory=list)  # each tree parent-first
    triggers: list[ConstraintTrigger] = field(default_factory=list)
    fallback: dict[str, str] = field(default_factory=dict)  # table key -> why it kept its indexes
    rebuild_seconds: dict[str, float] = field(default_factory=dict)  # schema.table -> seconds
    foreign_key_seconds: float = 0.0

    @property
    def index_count(self) -> int:
        return sum(len(tree) for tree in self.trees)


# The loaded tables and their partitions (an inheritance child is loaded in its own right).
_LOADED = partition_tree("loaded", "SELECT unnest(%(tables)s::pg_catalog.regclass[])::pg_catalog.oid")


def _regclasses(conn: psycopg.Connection, tables: list[TableRef]) -> list[str]:
    return [table.ident.as_string(conn) for table in tables]


IN_PLACE = "loaded with its indexes, keys and foreign keys in place (slower)"


def kept_in_place(conn: psycopg.Connection, tables: list[TableRef]) -> dict[str, str]:
    """Loaded tables (or their partitions) whose keys and indexes cannot come off and go back, each with why.

    Dropping them and adding them back needs ownership of the table (ALTER TABLE), and building
    an index needs CREATE on its schema as well, which ownership does not give (PostgreSQL 15
    withholds it on `public` by default), and CREATE on the tablespace of an index that lives
    outside the database's default one.
    """
    rows = conn.execute(
        _LOADED
        + """
        SELECT * FROM (
            SELECT c.oid::pg_catalog.regclass::text, pg_catalog.pg_get_userbyid(c.relowner),
                   pg_catalog.pg_has_role(c.relowner, 'USAGE') AS owned, n.nspname,
                   pg_catalog.has_schema_privilege(n.oid, 'CREATE') AS may_create, current_user,
                   (SELECT min(s.spcname) FROM pg_catalog.pg_index i
                    JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
                    JOIN pg_catalog.pg_tablespace s ON s.oid = ic.reltablespace
                    WHERE i.indrelid = c.oid AND NOT pg_catalog.has_tablespace_privilege(s.oid, 'CREATE')) AS barred
            FROM loaded JOIN pg_catalog.pg_class c ON c.oid = loaded.oid
            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        ) t
        WHERE NOT owned OR NOT may_create OR barred IS NOT NULL
        """,
        {"tables": _regclasses(conn, tables)},
    ).fetchall()
    reasons = {}
    for regclass, owner, owned, schema, may_create, role, tablespace in rows:
        if not owned:
            reasons[regclass] = f"owned by {owner}, not by the loading role: {IN_PLACE}"
        elif not may_create:
            reasons[regclass] = (
                f"the loading role may not CREATE in schema {schema}, which rebuilding an index needs: {IN_PLACE}; "
                f"GRANT CREATE ON SCHEMA {quote_ident(schema)} TO {quote_ident(role)} gives it the faster path")
        else:
            reasons[regclass] = (
                f"an index of it lives in tablespace {tablespace}, where the loading role may not CREATE: {IN_PLACE}; "
                f"GRANT CREATE ON TABLESPACE {quote_ident(tablespace)} TO {quote_ident(role)} gives it the faster path")
    return reasons


def _partition_root(conn: psycopg.Connection, regclass: str) -> str:
    row = conn.execute(
        "SELECT coalesce(pg_catalog.pg_partition_root(%s::pg_catalog.regclass)::text, %s)", (regclass, regclass)
    ).fetchone()
    return row[0]


def outside_referencing_tables(conn: psycopg.Connection, tables: list[TableRef]) -> list[str]:
    """Tables outside `tables`, owned by this role, whose foreign keys reference one of them.

    Their foreign keys come off for the load, which needs their lock too.
    """
    return sorted({fk.child_relation for fk in foreign_keys(conn, tables)
                   if fk.parent_touched and not fk.child_touched and fk.child_owned})


def take_off(conn: psycopg.Connection, tables: list[TableRef], keep_indexes: Collection[TableRef] = ()) -> TakenOff:
    """Record and drop the loaded tables' foreign keys, keys and indexes; disable constraint triggers.

    Tables whose keys cannot come off and go back (see kept_in_place: not owned, no CREATE on the
    schema or on an index's tablespace) keep everything, the slower path, and so does any key a
    kept foreign key depends on; `keep_indexes` keep their keys and indexes (small tables, whose
    rows cost less to index one by one than the index costs to drop and build). Call inside the
    load transaction, before TRUNCATE: an outside table's foreign key to a loaded table would
    otherwise make TRUNCATE refuse.
    """
    taken = record(conn, tables, keep_indexes)
    _drop(conn, taken)
    return taken


def record(conn: psycopg.Connection, tables: list[TableRef], keep_indexes: Collection[TableRef] = ()) -> TakenOff:
    """What take_off would remove, read from the catalog and changing nothing."""
    result = TakenOff()
    regclasses = _regclasses(conn, tables)
    kept = kept_in_place(conn, tables)
    for regclass, why in kept.items():
        result.fallback.setdefault(_partition_root(conn, regclass), why)
    kept_tables = set(kept)
    kept_key_indexes = _record_foreign_keys(conn, tables, kept_tables, result)
    in_place = {table.key for table in keep_indexes}
    for tree in index_trees(conn, regclasses):
        if tree[0].table_key in in_place:
            continue
        if not any(node.oid in kept_key_indexes or node.table in kept_tables for node in tree):
            result.trees.append(tree)
    trigger_rows = conn.execute(
        _LOADED
        + """
        SELECT t.tgname, t.tgrelid::pg_catalog.regclass::text, t.tgenabled
        FROM pg_catalog.pg_trigger t
        WHERE t.tgrelid IN (SELECT oid FROM loaded) AND t.tgconstraint <> 0 AND NOT t.tgisinternal
          AND t.tgenabled <> 'D' AND t.tgparentid = 0
        ORDER BY 2, 1
        """,
        {"tables": regclasses},
    ).fetchall()
    result.triggers = [ConstraintTrigger(*row) for row in trigger_rows if row[1] not in kept_tables]
    return result


def _record_foreign_keys(conn: psycopg.Connection, tables: list[TableRef], kept_tables: set[str], result: TakenOff) -> set[int]:
    """Foreign keys to and from the loaded tables that may come off; returns the key indexes the others need."""
    kept_key_indexes: set[int] = set()
    for fk in sorted(foreign_keys(conn, tables), key=lambda fk: (fk.child_relation, fk.name)):
        if fk.alterable and fk.child_relation not in kept_tables:
            result.foreign_keys.append(ForeignKey(fk.name, fk.child_relation, fk.definition, fk.comment))
        else:
            kept_key_indexes.add(fk.index_oid)
    return kept_key_indexes


def _drop(conn: psycopg.Connection, taken: TakenOff) -> None:
    for fk in taken.foreign_keys:
        conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(sql.SQL(fk.table), sql.Identifier(fk.name)))
    for tree in taken.trees:
        root = tree[0]
        if root.constraint:
            conn.execute(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(sql.SQL(root.table), sql.Identifier(root.constraint))
            )
        else:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.SQL(root.name)))
    for trigger in taken.triggers:
        # Like pg_restore, which creates them after the data: they do not fire for loaded rows.
        conn.execute(
            sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(sql.SQL(trigger.table), sql.Identifier(trigger.name))
        )


def index_trees(conn: psycopg.Connection, regclasses: list[str]) -> list[list[IndexNode]]:
    """Every valid top-level index of the loaded tables with its partitions' indexes, each tree parent-first."""
    rows = conn.execute(
        _LOADED
        + """
        , roots(oid, ord) AS (
            SELECT i.indexrelid, row_number() OVER (ORDER BY i.indrelid::pg_catalog.regclass::text,
                                                           i.indexrelid::pg_catalog.regclass::text)
            FROM pg_catalog.pg_index i
            WHERE i.indrelid IN (SELECT oid FROM loaded)
              AND i.indisvalid AND i.indislive
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits h WHERE h.inhrelid = i.indexrelid)
        ), tree(ord, oid, parent, depth) AS (
            SELECT ord, oid, NULL::pg_catalog.oid, 0 FROM roots
            UNION ALL
            SELECT t.ord, h.inhrelid, h.inhparent, t.depth + 1
            FROM pg_catalog.pg_inherits h JOIN tree t ON h.inhparent = t.oid
        )
        SELECT t.ord, t.oid, t.oid::pg_catalog.regclass::text, c.relname, i.indrelid::pg_catalog.regclass::text,
               tn.nspname || '.' || tc.relname, pg_catalog.pg_get_indexdef(t.oid), k.conname,
               pg_catalog.pg_get_constraintdef(k.oid), t.parent::pg_catalog.regclass::text, t.depth,
               (SELECT s.spcname FROM pg_catalog.pg_tablespace s WHERE s.oid = c.reltablespace),
               i.indisreplident, i.indisclustered,
               pg_catalog.obj_description(t.oid, 'pg_class'),
               pg_catalog.obj_description(k.oid, 'pg_constraint')
        FROM tree t
        JOIN pg_catalog.pg_index i ON i.indexrelid = t.oid
        JOIN pg_catalog.pg_class c ON c.oid = t.oid
        JOIN pg_catalog.pg_class tc ON tc.oid = i.indrelid
        JOIN pg_catalog.pg_namespace tn ON tn.oid = tc.relnamespace
        LEFT JOIN pg_catalog.pg_constraint k
               ON k.conindid = t.oid AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x')
        ORDER BY t.ord, t.depth, 3
        """,
        {"tables": regclasses},
    ).fetchall()
    trees: dict[int, list[IndexNode]] = {}
    for ordinal, *node in rows:
        trees.setdefault(ordinal, []).append(IndexNode(*node))
    return list(trees.values())


def put_back(conn: psycopg.Connection, taken: TakenOff) -> None:
    """Recreate keys and indexes, attach partitions' indexes, re-add foreign keys validated, re-enable triggers."""
    tablespace = ""
    for tree in taken.trees:
        started = time.monotonic()
        for node in tree:
            tablespace = _create(conn, node, tablespace)
        # Deepest first: a sub-partitioned index becomes valid once its own partitions are attached.
        for node in sorted(tree[1:], key=lambda n: -n.depth):
            conn.execute(
                sql.SQL("ALTER INDEX {} ATTACH PARTITION {}").format(sql.SQL(node.parent), sql.SQL(node.name))
            )
        for node in tree:
            for statement in index_properties(node):
                conn.execute(statement)
        table = tree[0].table_key
        taken.rebuild_seconds[table] = round(taken.rebuild_seconds.get(table, 0.0) + time.monotonic() - started, 3)
    started = time.monotonic()
    for fk in taken.foreign_keys:
        add_foreign_key(conn, fk)
    if tablespace:
        conn.execute("SET LOCAL default_tablespace = ''")
    taken.foreign_key_seconds = round(time.monotonic() - started, 3)
    for trigger in taken.triggers:
        conn.execute(_enable_trigger(trigger))


def _create(conn: psycopg.Connection, node: IndexNode, tablespace: str) -> str:
    """Recreate one index or key in its own tablespace; returns the session's default tablespace after."""
    if (node.tablespace or "") != tablespace:
        tablespace = node.tablespace or ""
        conn.execute(sql.SQL("SET LOCAL default_tablespace = {}").format(sql.Literal(tablespace)))
    if node.constraint:
        # ONLY: on a partitioned table this makes the parent's index alone; each partition's own
        # constraint is its own node, attached below, exactly as pg_dump restores them.
        conn.execute(
            sql.SQL("ALTER TABLE ONLY {} ADD CONSTRAINT {} {}").format(
                sql.SQL(node.table), sql.Identifier(node.constraint), sql.SQL(node.constraint_def)
            )
        )
    else:
        conn.execute(node.definition)
    return tablespace


def index_properties(node: IndexNode) -> list[sql.Composed]:
    """What an index carries beyond its definition: replica identity, CLUSTER, its comments."""
    statements = []
    if node.replica_identity:
        statements.append(sql.SQL("ALTER TABLE ONLY {} REPLICA IDENTITY USING INDEX {}").format(
            sql.SQL(node.table), sql.Identifier(node.short_name)))
    if node.clustered:
        statements.append(sql.SQL("ALTER TABLE ONLY {} CLUSTER ON {}").format(
            sql.SQL(node.table), sql.Identifier(node.short_name)))
    if node.comment is not None:
        statements.append(sql.SQL("COMMENT ON INDEX {} IS {}").format(sql.SQL(node.name), sql.Literal(node.comment)))
    if node.constraint and node.constraint_comment is not None:
        statements.append(sql.SQL("COMMENT ON CONSTRAINT {} ON {} IS {}").format(
            sql.Identifier(node.constraint), sql.SQL(node.table), sql.Literal(node.constraint_comment)))
    return statements


def add_foreign_key(conn: psycopg.Connection, fk: ForeignKey) -> None:
    """ADD CONSTRAINT (validated, unless its definition says NOT VALID), and its comment."""
    # Without ONLY: on a partitioned table the constraint is cloned onto every partition.
    conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
        sql.SQL(fk.table), sql.Identifier(fk.name), sql.SQL(fk.definition)))
    if fk.comment is not None:
        conn.execute(sql.SQL("COMMENT ON CONSTRAINT {} ON {} IS {}").format(
            sql.Identifier(fk.name), sql.SQL(fk.table), sql.Literal(fk.comment)))


def _enable_trigger(trigger: ConstraintTrigger) -> sql.Composed:
    mode = {"O": "", "R": "REPLICA ", "A": "ALWAYS "}[trigger.enabled]
    return sql.SQL("ALTER TABLE {} ENABLE {}TRIGGER {}").format(
        sql.SQL(trigger.table), sql.SQL(mode), sql.Identifier(trigger.name)
    )
