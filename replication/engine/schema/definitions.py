"""What a table is, as the catalog defines it: columns, indexes, constraints, partitions, the enum
values its columns take, and the objects it needs. Read from production inside the snapshot's
transaction (so it describes the same point in time as the rows) and from an environment, to
compare the two and to bring the environment level."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import psycopg

from ..pg.catalog import SYSTEM_SCHEMAS, TableRef


@dataclass
class ColumnDefinition:
    name: str
    type: str  # format_type, schema-qualified where the type is not on the default search path
    not_null: bool = False
    default: str | None = None  # pg_get_expr of the default
    identity: str = ""  # 'a' (ALWAYS), 'd' (BY DEFAULT) or ''
    generated: str = ""  # the expression of a generated column


@dataclass
class IndexDefinition:
    name: str
    definition: str  # pg_get_indexdef: CREATE [UNIQUE] INDEX name ON schema.table USING ...
    constraint: bool = False  # backs a primary key, unique or exclusion constraint (made by it)


@dataclass
class ConstraintDefinition:
    name: str
    kind: str  # p, u, f, c, x
    definition: str  # pg_get_constraintdef


@dataclass
class PartitionDefinition:
    schema: str
    name: str
    bound: str  # pg_get_expr(relpartbound): FOR VALUES ...
    indexes: list[str] = field(default_factory=list)  # its own indexes' names (pg_dump's entries for them)

    @property
    def ref(self) -> TableRef:
        return TableRef(self.schema, self.name)


@dataclass
class TableDefinition:
    schema: str
    name: str
    columns: list[ColumnDefinition] = field(default_factory=list)
    indexes: list[IndexDefinition] = field(default_factory=list)
    constraints: list[ConstraintDefinition] = field(default_factory=list)
    partitions: list[PartitionDefinition] = field(default_factory=list)
    sequences: list[str] = field(default_factory=list)  # owned by its columns, by name (same schema)

    @property
    def ref(self) -> TableRef:
        return TableRef(self.schema, self.name)

    @property
    def key(self) -> str:
        return self.ref.key

    def column(self, name: str) -> ColumnDefinition | None:
        return self._columns.get(name)

    @cached_property
    def _columns(self) -> dict[str, ColumnDefinition]:
        return {c.name: c for c in self.columns}


@dataclass(frozen=True, order=True)
class Requirement:
    """An object a table needs, named as pg_dump names its entry: (kind, schema, tag)."""

    kind: str  # SCHEMA, TYPE, DOMAIN, FUNCTION, PROCEDURE, SEQUENCE
    schema: str  # '' for a schema itself
    tag: str


@dataclass
class Definitions:
    tables: list[TableDefinition] = field(default_factory=list)
    enums: dict[str, list[str]] = field(default_factory=dict)  # schema.type -> labels in order
    requires: list[Requirement] = field(default_factory=list)

    def table(self, ref: TableRef) -> TableDefinition | None:
        return self._tables.get(ref)

    @cached_property
    def _tables(self) -> dict[TableRef, TableDefinition]:
        # Built once, on first use: a thousand tables looked up one by one must not cost n².
        return {t.ref: t for t in self.tables}

    def to_plain(self) -> dict:
        return {
            "tables": [_table_plain(t) for t in self.tables],
            "enums": self.enums,
            "requires": [[r.kind, r.schema, r.tag] for r in self.requires],
        }

    @classmethod
    def from_plain(cls, raw: dict) -> "Definitions":
        tables = [TableDefinition(
            schema=t["schema"], name=t["name"],
            columns=[ColumnDefinition(**c) for c in t["columns"]],
            indexes=[IndexDefinition(**i) for i in t["indexes"]],
            constraints=[ConstraintDefinition(**c) for c in t["constraints"]],
            partitions=[PartitionDefinition(**p) for p in t["partitions"]],
            sequences=list(t["sequences"]),
        ) for t in raw.get("tables", [])]
        return cls(tables, dict(raw.get("enums", {})), [Requirement(*r) for r in raw.get("requires", [])])


def _table_plain(table: TableDefinition) -> dict:
    return {
        "schema": table.schema, "name": table.name,
        "columns": [vars(c) for c in table.columns],
        "indexes": [vars(i) for i in table.indexes],
        "constraints": [vars(c) for c in table.constraints],
        "partitions": [vars(p) for p in table.partitions],
        "sequences": table.sequences,
    }


# The tables asked about that exist, by oid; partitions of partitioned ones are reached through them.
_TABLES = """
    SELECT c.oid, n.nspname AS nsp, c.relname AS rel
    FROM unnest(%(schemas)s::pg_catalog.text[], %(names)s::pg_catalog.text[]) AS w(nsp, rel)
    JOIN pg_catalog.pg_namespace n ON n.nspname = w.nsp
    JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = w.rel AND c.relkind IN ('r', 'p')
"""


def read_definitions(conn: psycopg.Connection, tables: list[TableRef]) -> Definitions:
    """The definitions of those of `tables` that exist, in the order asked; a few catalog queries in all.

    Run with search_path pinned to pg_catalog (every session here is), so every type and
    expression comes out schema-qualified and reads the same from any database.
    """
    params = {"schemas": [t.schema for t in tables], "names": [t.name for t in tables]}
    found: dict[TableRef, TableDefinition] = {}
    for nsp, rel in conn.execute(f"SELECT nsp, rel FROM ({_TABLES}) t", params).fetchall():
        found[TableRef(nsp, rel)] = TableDefinition(nsp, rel)
    for nsp, rel, *column in conn.execute(f"""
        SELECT t.nsp, t.rel, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
               CASE WHEN a.attgenerated = '' THEN pg_catalog.pg_get_expr(d.adbin, d.adrelid) END,
               a.attidentity::text,
               CASE WHEN a.attgenerated <> '' THEN pg_catalog.pg_get_expr(d.adbin, d.adrelid) ELSE '' END
        FROM ({_TABLES}) t
        JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
        LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        ORDER BY t.nsp, t.rel, a.attnum""", params).fetchall():
        found[TableRef(nsp, rel)].columns.append(ColumnDefinition(*column))
    for nsp, rel, name, definition, constraint in conn.execute(f"""
        SELECT t.nsp, t.rel, ic.relname, pg_catalog.pg_get_indexdef(i.indexrelid),
               EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conindid = i.indexrelid
                       AND k.conrelid = t.oid AND k.contype IN ('p', 'u', 'x'))
        FROM ({_TABLES}) t
        JOIN pg_catalog.pg_index i ON i.indrelid = t.oid
        JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
        ORDER BY t.nsp, t.rel, ic.relname""", params).fetchall():
        found[TableRef(nsp, rel)].indexes.append(IndexDefinition(name, definition, constraint))
    # NOT NULL is a column's property here (PostgreSQL 18 also lists it as a constraint, 'n').
    for nsp, rel, *constraint in conn.execute(f"""
        SELECT t.nsp, t.rel, k.conname, k.contype::text, pg_catalog.pg_get_constraintdef(k.oid)
        FROM ({_TABLES}) t
        JOIN pg_catalog.pg_constraint k ON k.conrelid = t.oid AND k.contype IN ('p', 'u', 'f', 'c', 'x')
        WHERE k.conparentid = 0
        ORDER BY t.nsp, t.rel, k.conname""", params).fetchall():
        found[TableRef(nsp, rel)].constraints.append(ConstraintDefinition(*constraint))
    for nsp, rel, *partition in conn.execute(f"""
        SELECT t.nsp, t.rel, pn.nspname, pc.relname, pg_catalog.pg_get_expr(pc.relpartbound, pc.oid)
        FROM ({_TABLES}) t
        JOIN pg_catalog.pg_inherits h ON h.inhparent = t.oid
        JOIN pg_catalog.pg_class pc ON pc.oid = h.inhrelid AND pc.relispartition
        JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
        ORDER BY t.nsp, t.rel, pn.nspname, pc.relname""", params).fetchall():
        found[TableRef(nsp, rel)].partitions.append(PartitionDefinition(*partition))
    partition_indexes = dict(((nsp, rel), names) for nsp, rel, names in conn.execute(f"""
        SELECT pn.nspname, pc.relname, pg_catalog.array_agg(ic.relname::text ORDER BY ic.relname)
        FROM ({_TABLES}) t
        JOIN pg_catalog.pg_inherits h ON h.inhparent = t.oid
        JOIN pg_catalog.pg_class pc ON pc.oid = h.inhrelid AND pc.relispartition
        JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
        JOIN pg_catalog.pg_index i ON i.indrelid = pc.oid
        JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
        GROUP BY 1, 2""", params).fetchall())
    for table in found.values():
        for partition in table.partitions:
            partition.indexes = list(partition_indexes.get((partition.schema, partition.name), []))
    for nsp, rel, sequence in conn.execute(f"""
        SELECT t.nsp, t.rel, s.relname
        FROM ({_TABLES}) t
        JOIN pg_catalog.pg_depend d ON d.refobjid = t.oid AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
             AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype IN ('a', 'i')
        JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'
        ORDER BY 1, 2, 3""", params).fetchall():
        found[TableRef(nsp, rel)].sequences.append(sequence)
    return Definitions([found[t] for t in tables if t in found], _enums(conn, params), _requirements(conn, params))


def _enums(conn: psycopg.Connection, params: dict) -> dict[str, list[str]]:
    """The labels of every enum a column takes (directly, as an array, or through a domain)."""
    rows = conn.execute(f"""
        WITH RECURSIVE used(typ) AS (
            SELECT a.atttypid FROM ({_TABLES}) t
            JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
            UNION
            SELECT CASE WHEN ty.typtype = 'd' THEN ty.typbasetype ELSE ty.typelem END
            FROM used JOIN pg_catalog.pg_type ty ON ty.oid = used.typ
            WHERE ty.typtype = 'd' OR ty.typelem <> 0
        )
        SELECT n.nspname || '.' || ty.typname, e.enumlabel
        FROM used
        JOIN pg_catalog.pg_type ty ON ty.oid = used.typ AND ty.typtype = 'e'
        JOIN pg_catalog.pg_namespace n ON n.oid = ty.typnamespace
        JOIN pg_catalog.pg_enum e ON e.enumtypid = ty.oid
        ORDER BY 1, e.enumsortorder""", params).fetchall()
    enums: dict[str, list[str]] = {}
    for name, label in rows:
        enums.setdefault(name, []).append(label)
    return enums


def _requirements(conn: psycopg.Connection, params: dict) -> list[Requirement]:
    """What the tables' columns, defaults, checks and triggers need, as pg_dump tags its entries:
    their types (enums, domains, composites, ranges), functions, sequences outside the table, and
    the schemas of all of these and of the tables. Objects of extensions are the extension's."""
    rows = conn.execute(f"""
        WITH RECURSIVE t AS ({_TABLES}),
        direct(classid, objid) AS (
            SELECT d.refclassid, d.refobjid FROM pg_catalog.pg_depend d
            WHERE d.deptype = 'n' AND (
                (d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid IN (SELECT oid FROM t))
             OR (d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND d.objid IN
                    (SELECT oid FROM pg_catalog.pg_attrdef WHERE adrelid IN (SELECT oid FROM t)))
             OR (d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND d.objid IN
                    (SELECT oid FROM pg_catalog.pg_constraint WHERE conrelid IN (SELECT oid FROM t)
                     AND contype IN ('c', 'x')))
             OR (d.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass AND d.objid IN
                    (SELECT oid FROM pg_catalog.pg_trigger WHERE tgrelid IN (SELECT oid FROM t)
                     AND NOT tgisinternal)))
        ),
        types(typ) AS (
            SELECT objid FROM direct WHERE classid = 'pg_catalog.pg_type'::pg_catalog.regclass
            UNION
            SELECT CASE WHEN ty.typtype = 'd' THEN ty.typbasetype ELSE ty.typelem END
            FROM types JOIN pg_catalog.pg_type ty ON ty.oid = types.typ
            WHERE ty.typtype = 'd' OR (ty.typelem <> 0 AND ty.typcategory = 'A')
        ),
        found(kind, nsp, tag, oid, classid) AS (
            SELECT CASE ty.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, ty.typnamespace, ty.typname::text,
                   ty.oid, 'pg_catalog.pg_type'::pg_catalog.regclass
            FROM types JOIN pg_catalog.pg_type ty ON ty.oid = types.typ
            WHERE ty.typtype IN ('e', 'd', 'r') OR (ty.typtype = 'c' AND
                  (SELECT relkind FROM pg_catalog.pg_class WHERE oid = ty.typrelid) = 'c')
            UNION ALL
            SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, p.pronamespace,
                   p.proname || '(' || pg_catalog.oidvectortypes(p.proargtypes) || ')', p.oid,
                   'pg_catalog.pg_proc'::pg_catalog.regclass
            FROM direct JOIN pg_catalog.pg_proc p ON p.oid = direct.objid
            WHERE direct.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
            UNION ALL
            SELECT 'SEQUENCE', s.relnamespace, s.relname::text, s.oid, 'pg_catalog.pg_class'::pg_catalog.regclass
            FROM direct JOIN pg_catalog.pg_class s ON s.oid = direct.objid AND s.relkind = 'S'
            WHERE direct.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend o WHERE o.objid = s.oid
                              AND o.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND o.deptype IN ('a', 'i'))
        ),
        kept AS (
            SELECT f.kind, n.nspname, f.tag FROM found f JOIN pg_catalog.pg_namespace n ON n.oid = f.nsp
            WHERE n.nspname <> ALL (%(system)s)
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e WHERE e.objid = f.oid AND e.classid = f.classid
                              AND e.deptype = 'e')
        )
        SELECT kind, nspname, tag FROM kept
        UNION
        SELECT 'SCHEMA', '', nspname FROM kept
        UNION
        SELECT 'SCHEMA', '', nsp FROM t
        ORDER BY 1, 2, 3""", {**params, "system": list(SYSTEM_SCHEMAS)}).fetchall()
    return [Requirement(*row) for row in rows]
