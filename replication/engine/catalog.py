"""PostgreSQL catalog introspection: tables, columns, foreign keys and owned sequences."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import psycopg
from psycopg import sql

from .errors import TableSelectionError

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


@dataclass(frozen=True, order=True)
class TableRef:
    """A table by schema and name, exactly as the catalog spells them (no quoting)."""

    schema: str
    name: str

    @property
    def key(self) -> str:
        """`schema.table`: the name people read, and the snapshot file's stem."""
        return f"{self.schema}.{self.name}"

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    not_null: bool
    has_default: bool
    generated: bool
    identity: bool

    @property
    def fillable_by_target(self) -> bool:
        """True when the target can fill this column itself on a COPY that leaves it out."""
        return self.generated or self.identity or self.has_default or not self.not_null


def list_tables(conn: psycopg.Connection) -> list[TableRef]:
    """Every ordinary and partitioned table outside the system schemas.

    Partitions are left out: their rows are read and written through the partitioned parent, so
    each row is copied once and routed by the target's own partitioning.
    """
    rows = conn.execute(
        """
        SELECT n.nspname, c.relname
        FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p')
          AND NOT c.relispartition
          AND n.nspname <> ALL (%s)
          AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
          AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%%'
        ORDER BY 1, 2
        """,
        (list(SYSTEM_SCHEMAS),),
    ).fetchall()
    return [TableRef(schema, name) for schema, name in rows]


def _matches(table: TableRef, pattern: str) -> bool:
    # A pattern without a dot names a table in any schema, as people usually write `orders`.
    target = table.key if "." in pattern else table.name
    return fnmatch.fnmatchcase(target, pattern)


def select_tables(available: list[TableRef], include: list[str], exclude: list[str]) -> list[TableRef]:
    """Apply include and exclude names or glob patterns; an include that matches nothing is an error."""
    chosen = list(available)
    if include:
        missing = [p for p in include if not any(_matches(t, p) for t in available)]
        if missing:
            known = ", ".join(t.key for t in available) or "(none)"
            raise TableSelectionError(
                f"No table in production matches {', '.join(repr(m) for m in missing)}. "
                f"Tables available: {known}. Fix `snapshot.include` in replication.yaml, or the run's "
                "prod_snapshot config if it overrides it."
            )
        chosen = [t for t in available if any(_matches(t, p) for p in include)]
    chosen = [t for t in chosen if not any(_matches(t, p) for p in exclude)]
    if not chosen:
        raise TableSelectionError(
            "The table selection matches no table: check `snapshot.include` and `snapshot.exclude` in "
            "replication.yaml, and the run's prod_snapshot config if it overrides them."
        )
    return chosen


def table_exists(conn: psycopg.Connection, table: TableRef) -> bool:
    row = conn.execute(
        """
        SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')
        """,
        (table.schema, table.name),
    ).fetchone()
    return row is not None


def is_partitioned(conn: psycopg.Connection, table: TableRef) -> bool:
    row = conn.execute(
        "SELECT c.relkind = 'p' FROM pg_catalog.pg_class c WHERE c.oid = %s::pg_catalog.regclass",
        (table.ident.as_string(conn),),
    ).fetchone()
    return bool(row and row[0])


def table_columns(conn: psycopg.Connection, table: TableRef) -> list[Column]:
    """Live columns in their table order, with what a loader needs to know of each."""
    rows = conn.execute(
        """
        SELECT a.attname,
               pg_catalog.format_type(a.atttypid, a.atttypmod),
               a.attnotnull,
               a.atthasdef,
               a.attgenerated <> '',
               a.attidentity <> ''
        FROM pg_catalog.pg_attribute a
        JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum
        """,
        (table.schema, table.name),
    ).fetchall()
    return [Column(*row) for row in rows]


def foreign_key_parents(conn: psycopg.Connection, tables: list[TableRef]) -> dict[TableRef, set[TableRef]]:
    """For each table, the other tables among `tables` that its foreign keys reference."""
    wanted = set(tables)
    rows = conn.execute(
        """
        SELECT cn.nspname, c.relname, pn.nspname, p.relname
        FROM pg_catalog.pg_constraint k
        JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
        JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace
        JOIN pg_catalog.pg_class p ON p.oid = k.confrelid
        JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
        WHERE k.contype = 'f' AND k.conparentid = 0
        """
    ).fetchall()
    parents: dict[TableRef, set[TableRef]] = {t: set() for t in tables}
    for child_schema, child, parent_schema, parent in rows:
        child_ref, parent_ref = TableRef(child_schema, child), TableRef(parent_schema, parent)
        if child_ref in wanted and parent_ref in wanted and child_ref != parent_ref:
            parents[child_ref].add(parent_ref)
    return parents


def foreign_key_order(parents: dict[TableRef, set[TableRef]]) -> tuple[list[TableRef], bool]:
    """Tables with referenced tables first; the flag says whether a cycle had to be broken."""
    ordered: list[TableRef] = []
    done: set[TableRef] = set()
    remaining = sorted(parents)
    cyclic = False
    while remaining:
        ready = [t for t in remaining if parents[t] <= done]
        if not ready:
            # A cycle: only deferred constraints can load it; take the first and let the
            # transaction's SET CONSTRAINTS ALL DEFERRED do the rest.
            cyclic = True
            ready = [remaining[0]]
        for table in ready:
            ordered.append(table)
            done.add(table)
        remaining = [t for t in remaining if t not in done]
    return ordered, cyclic


@dataclass(frozen=True)
class OwnedSequence:
    column: str
    sequence: str  # schema-qualified, quoted as regclass text prints it


def owned_sequences(conn: psycopg.Connection, table: TableRef) -> list[OwnedSequence]:
    """Sequences behind serial and identity columns of a table."""
    rows = conn.execute(
        """
        SELECT a.attname, s.oid::regclass::text
        FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'
        JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE d.classid = 'pg_catalog.pg_class'::regclass
          AND d.refclassid = 'pg_catalog.pg_class'::regclass
          AND d.deptype IN ('a', 'i')
          AND d.refobjid = %s::regclass
        ORDER BY a.attnum
        """,
        (table.ident.as_string(conn),),
    ).fetchall()
    return [OwnedSequence(column, seq) for column, seq in rows]
