"""PostgreSQL catalog introspection: tables, columns, foreign keys and owned sequences."""

from __future__ import annotations

import fnmatch
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..errors import TableSelectionError

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

    @property
    def quoted(self) -> str:
        """`"schema"."table"` as SQL text, for statements built as strings where there are thousands."""
        return f"{quote_ident(self.schema)}.{quote_ident(self.name)}"


def quote_ident(name: str) -> str:
    """An identifier always quoted, as PostgreSQL reads it: double quotes, inner quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """A string constant as SQL text, for statements built as strings (standard_conforming_strings is pinned on)."""
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class Column:
    """A live column of a table, with what the snapshot, the loader and masking need to know of it."""

    name: str
    type: str  # format_type: schema-qualified under the pinned search_path
    not_null: bool
    has_default: bool
    generated: bool
    identity: bool
    category: str = "U"  # pg_type.typcategory of the base type (of the element type for arrays)
    is_array: bool = False
    domain_not_null: bool = False  # a domain that refuses NULL
    base_type: str = ""  # pg_type.typname with domains resolved (an array type for arrays: _int4)
    storage_length: int = -1  # pg_type.typlen of that type: -1 for variable-length values

    @property
    def fillable_by_target(self) -> bool:
        """True when the target can fill this column itself on a COPY that leaves it out."""
        return self.generated or self.identity or self.has_default or not self.not_null

    @property
    def refuses_null(self) -> bool:
        return self.not_null or self.domain_not_null


@dataclass(frozen=True)
class TableSize:
    """Bytes on disk of a table's leaves (the table itself, or every partition below it)."""

    bytes: int  # heap, TOAST, free space and visibility maps, as pg_table_size counts them
    toast_bytes: int  # of which TOAST: values too large to stay in the row


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


def _names(tables: list[TableRef]) -> tuple[list[str], list[str]]:
    return [t.schema for t in tables], [t.name for t in tables]


def columns_of(conn: psycopg.Connection, tables: list[TableRef]) -> dict[TableRef, list[Column]]:
    """Live columns of each ordinary or partitioned table, in table order, read in one query.

    A table that does not exist (or is not a table) is absent from the result.
    """
    rows = conn.execute(
        """
        SELECT w.nsp, w.rel, a.attname,
               pg_catalog.format_type(a.atttypid, a.atttypmod),
               a.attnotnull, a.atthasdef, a.attgenerated <> '', a.attidentity <> '',
               coalesce(e.typcategory, b.typcategory), e.oid IS NOT NULL, coalesce(t.typnotnull, false),
               b.typname, b.typlen
        FROM unnest(%s::pg_catalog.text[], %s::pg_catalog.text[]) AS w(nsp, rel)
        JOIN pg_catalog.pg_namespace n ON n.nspname = w.nsp
        JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = w.rel AND c.relkind IN ('r', 'p')
        LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        LEFT JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_catalog.pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
        LEFT JOIN pg_catalog.pg_type e ON e.oid = b.typelem AND b.typcategory = 'A'
        ORDER BY w.nsp, w.rel, a.attnum
        """,
        _names(tables),
    ).fetchall()
    found: dict[TableRef, list[Column]] = {}
    for schema, name, *column in rows:
        columns = found.setdefault(TableRef(schema, name), [])
        if column[0] is not None:  # a table may have no columns at all
            columns.append(Column(*column))
    return found


def table_columns(conn: psycopg.Connection, table: TableRef) -> list[Column]:
    """Live columns in their table order, with what a loader needs to know of each."""
    return columns_of(conn, [table]).get(table, [])


def partitioned_tables(conn: psycopg.Connection, tables: list[TableRef]) -> set[TableRef]:
    """Which of `tables` are partitioned (read whole through the parent, never with ONLY)."""
    rows = conn.execute(
        """
        SELECT n.nspname, c.relname
        FROM unnest(%s::pg_catalog.text[], %s::pg_catalog.text[]) AS w(nsp, rel)
        JOIN pg_catalog.pg_namespace n ON n.nspname = w.nsp
        JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = w.rel
        WHERE c.relkind = 'p'
        """,
        _names(tables),
    ).fetchall()
    return {TableRef(schema, name) for schema, name in rows}


def own_rows(table: TableRef, partitioned: Collection[TableRef]) -> sql.Composed:
    """`table` in a FROM clause meaning its own rows: ONLY for a plain table, whose inheritance
    children (`CREATE TABLE ... INHERITS`) hold rows of their own that a bare name would add in;
    the whole tree for a partitioned table, which holds no row itself."""
    return sql.Composed([sql.SQL("" if table in partitioned else "ONLY "), table.ident])


def own_rows_text(table: TableRef, partitioned: Collection[TableRef]) -> str:
    """The same as plain text, for statements built as strings by the thousand."""
    return ("" if table in partitioned else "ONLY ") + table.quoted


def partition_tree(name: str, seed: str, carried: Sequence[str] = ()) -> str:
    """`WITH RECURSIVE name(oid, *carried)`: the relations `seed` selects (their oid first, then the
    `carried` columns) and every partition below each partitioned one, carrying its root's columns.

    Partitions only: an inheritance child of a plain table is a table of its own, read and locked
    with ONLY, never a part of its parent. The one home of this recursion.
    """
    columns = ", ".join(("oid", *carried))
    carry = "".join(f", t.{c}" for c in carried)
    return (f"WITH RECURSIVE {name}({columns}) AS (\n    {seed}\n    UNION\n"
            f"    SELECT i.inhrelid{carry} FROM {name} t\n"
            f"    JOIN pg_catalog.pg_class p ON p.oid = t.oid AND p.relkind = 'p'\n"
            f"    JOIN pg_catalog.pg_inherits i ON i.inhparent = t.oid\n)\n")


def is_partitioned(conn: psycopg.Connection, table: TableRef) -> bool:
    return table in partitioned_tables(conn, [table])


def table_sizes(conn: psycopg.Connection, tables: list[TableRef]) -> dict[TableRef, TableSize]:
    """On-disk size of each table: a plain table's own, a partitioned table's leaf partitions'.

    Inheritance children of a plain table are left out, as the snapshot reads it with ONLY.
    """
    rows = conn.execute(
        partition_tree("leaves", "SELECT r.oid::pg_catalog.oid, r.ord "
                                 "FROM unnest(%s::pg_catalog.regclass[]) WITH ORDINALITY AS r(oid, ord)", ["ord"])
        + """
        SELECT l.ord,
               coalesce(sum(pg_catalog.pg_table_size(l.oid)), 0)::bigint,
               coalesce(sum(pg_catalog.pg_total_relation_size(c.reltoastrelid))
                        FILTER (WHERE c.reltoastrelid <> 0), 0)::bigint
        FROM leaves l JOIN pg_catalog.pg_class c ON c.oid = l.oid
        GROUP BY l.ord
        """,
        ([t.ident.as_string(conn) for t in tables],),
    ).fetchall()
    return {tables[ordinal - 1]: TableSize(int(size), int(toast)) for ordinal, size, toast in rows}


@dataclass(frozen=True)
class ForeignKeyEdge:
    """One foreign key as the catalog holds it: what every reader of foreign keys needs."""

    name: str
    child: TableRef
    child_columns: tuple[str, ...]
    parent: TableRef
    parent_columns: tuple[str, ...]
    validated: bool = True
    child_relation: str = ""  # regclass text: schema-qualified and quoted, as DDL takes it
    parent_relation: str = ""
    child_partitioned: bool = False
    parent_partitioned: bool = False
    definition: str = ""  # pg_get_constraintdef
    index_oid: int = 0  # the parent's key index the constraint depends on
    comment: str | None = None
    child_owned: bool = False  # the connected role may ALTER the referencing table
    may_reference: bool = False  # ... and holds REFERENCES on the referenced one
    child_touched: bool = False  # the referencing table is one of the tables asked about (or their partition)
    parent_touched: bool = False

    @property
    def alterable(self) -> bool:
        """The role may drop this constraint and add it back."""
        return self.child_owned and self.may_reference


_FOREIGN_KEYS = partition_tree("touched", "SELECT unnest(%(tables)s::pg_catalog.regclass[])::pg_catalog.oid") + """
SELECT k.conname, cn.nspname, c.relname, pn.nspname, p.relname,
       ARRAY(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY u(n, i)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.i),
       ARRAY(SELECT a.attname FROM unnest(k.confkey) WITH ORDINALITY u(n, i)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n ORDER BY u.i),
       k.convalidated, k.conrelid::pg_catalog.regclass::pg_catalog.text,
       k.confrelid::pg_catalog.regclass::pg_catalog.text, c.relkind = 'p', p.relkind = 'p',
       pg_catalog.pg_get_constraintdef(k.oid), k.conindid, pg_catalog.obj_description(k.oid, 'pg_constraint'),
       pg_catalog.pg_has_role(c.relowner, 'USAGE'), pg_catalog.has_table_privilege(k.confrelid, 'REFERENCES'),
       k.conrelid IN (SELECT oid FROM touched), k.confrelid IN (SELECT oid FROM touched)
FROM pg_catalog.pg_constraint k
JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace
JOIN pg_catalog.pg_class p ON p.oid = k.confrelid
JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
WHERE k.contype = 'f' AND k.conparentid = 0
  AND (%(every)s OR k.conrelid IN (SELECT oid FROM touched) OR k.confrelid IN (SELECT oid FROM touched))
ORDER BY 2, 3, 1
"""


def foreign_keys(conn: psycopg.Connection, tables: list[TableRef] | None = None) -> list[ForeignKeyEdge]:
    """The foreign keys touching `tables` (or their partitions) on either side, or every one of the
    database without `tables`: the one reading of pg_constraint's foreign keys, in table order."""
    rows = conn.execute(_FOREIGN_KEYS, {"tables": [t.ident.as_string(conn) for t in tables or []],
                                        "every": tables is None}).fetchall()
    return [ForeignKeyEdge(name, TableRef(cs, child), tuple(child_cols), TableRef(ps, parent), tuple(parent_cols),
                           *rest)
            for name, cs, child, ps, parent, child_cols, parent_cols, *rest in rows]


def foreign_key_edges(conn: psycopg.Connection, tables: list[TableRef]) -> list[ForeignKeyEdge]:
    """The target's foreign keys between `tables`, with their columns in key order."""
    wanted = set(tables)
    return [fk for fk in foreign_keys(conn, tables) if fk.child in wanted and fk.parent in wanted]


def foreign_key_parents(conn: psycopg.Connection, tables: list[TableRef]) -> dict[TableRef, set[TableRef]]:
    """For each table, the other tables among `tables` that its foreign keys reference."""
    return parents_of(tables, foreign_key_edges(conn, tables))


def parents_of(tables: list[TableRef], edges: list[ForeignKeyEdge]) -> dict[TableRef, set[TableRef]]:
    """For each of `tables`, the other tables its foreign keys (among `edges`) reference."""
    parents: dict[TableRef, set[TableRef]] = {t: set() for t in tables}
    for edge in edges:
        if edge.child != edge.parent and edge.child in parents:
            parents[edge.child].add(edge.parent)
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
