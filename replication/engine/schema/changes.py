"""The statements that bring an environment's replicated tables to production's definitions.

`add` creates what production has and the environment lacks; `production` also drops and alters
what differs. Whole tables (and the types, functions and sequences they need) are created from
pg_dump's own entries; a column, index, constraint or partition of a table the environment
already has is added from the definitions read in the same snapshot.

The statements come in three groups, by when they can run:
- enum values, committed before the load (PostgreSQL cannot use a value added by a transaction
  that has not committed);
- structure, in the load transaction before the rows: schemas, types, functions, tables,
  columns, types of columns, and what `production` drops;
- after the rows, in the same transaction: keys, indexes, foreign keys, triggers and NOT NULL,
  so that they are built once over the loaded rows and foreign keys are validated once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import psycopg

from ..errors import SchemaMismatchError
from ..pg.catalog import TableRef, quote_ident, quote_literal
from .definitions import ColumnDefinition, Definitions, Requirement, TableDefinition
from .dump import DumpEntry

_GRANTEE = re.compile(r"\b(?:TO|FROM)\s+(.+?)(?:\s+WITH GRANT OPTION|\s+GRANTED BY .*)?;\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Statement:
    what: str  # for the log and the metadata: "create table public.x", "add column public.t.c"
    sql: str


@dataclass
class SchemaChanges:
    enum_values: list[Statement] = field(default_factory=list)
    structure: list[Statement] = field(default_factory=list)
    after_data: list[Statement] = field(default_factory=list)
    skipped_grants: list[str] = field(default_factory=list)  # to roles this environment does not have

    def __bool__(self) -> bool:
        return bool(self.enum_values or self.structure or self.after_data)

    @property
    def described(self) -> list[str]:
        return [s.what for s in (*self.enum_values, *self.structure, *self.after_data)]


def plan_changes(conn: psycopg.Connection, mode: str, environment: str, production: Definitions,
                 present: Definitions, dump: list[DumpEntry] | None) -> SchemaChanges:
    """What `mode` (add or production) runs to bring `present` (the environment) to `production`."""
    changes = SchemaChanges()
    exact = mode == "production"
    roles = {name for (name,) in conn.execute("SELECT rolname FROM pg_catalog.pg_roles").fetchall()}
    missing = [t for t in production.tables if present.table(t.ref) is None]
    needed = _missing_requirements(conn, production.requires)
    if (missing or needed) and dump is None:
        names = ", ".join([t.key for t in missing] + [f"{r.kind.lower()} {r.tag}" for r in needed])
        raise SchemaMismatchError(
            f"{environment}: schema: {mode} must create {names}, but this snapshot holds no pg_dump of production's "
            "definitions (taken by an older version, or pg_dump failed at capture: see prod_snapshot's log). "
            "Materialize prod_snapshot again with refresh: true. Nothing was written.")
    if dump is not None:
        _from_dump(changes, dump, needed, missing, roles)
    for wanted in production.tables:
        have = present.table(wanted.ref)
        if have is not None:
            _table_changes(changes, wanted, have, exact)
    for name, labels in production.enums.items():
        have_labels = present.enums.get(name)
        if have_labels is None:
            continue
        previous = None
        for label in labels:
            if label not in have_labels:
                place = f" AFTER {quote_literal(previous)}" if previous is not None else (
                    f" BEFORE {quote_literal(have_labels[0])}" if have_labels else "")
                changes.enum_values.append(Statement(
                    f"add value {label!r} to enum {name}",
                    f"ALTER TYPE {_qualified(name)} ADD VALUE IF NOT EXISTS {quote_literal(label)}{place}"))
            previous = label
    return changes


def _qualified(key: str) -> str:
    schema, _, name = key.partition(".")
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def _missing_requirements(conn: psycopg.Connection, requires: list[Requirement]) -> list[Requirement]:
    """Those of `requires` the environment does not have, by the name pg_dump gives them."""
    if not requires:
        return []
    probes = []
    for r in requires:
        qualified = f"{quote_ident(r.schema)}.{r.tag}" if r.kind in ("FUNCTION", "PROCEDURE") else \
            f"{quote_ident(r.schema)}.{quote_ident(r.tag)}"
        probe = {"SCHEMA": "pg_catalog.to_regnamespace(%s)::oid", "TYPE": "pg_catalog.to_regtype(%s)::oid",
                 "DOMAIN": "pg_catalog.to_regtype(%s)::oid", "SEQUENCE": "pg_catalog.to_regclass(%s)::oid",
                 "FUNCTION": "pg_catalog.to_regprocedure(%s)::oid",
                 "PROCEDURE": "pg_catalog.to_regprocedure(%s)::oid"}[r.kind]
        probes.append((probe, quote_ident(r.tag) if r.kind == "SCHEMA" else qualified))
    query = "SELECT " + ", ".join(p for p, _ in probes)
    found = conn.execute(query, [value for _, value in probes]).fetchone()
    return [r for r, oid in zip(requires, found) if oid is None]


def _from_dump(changes: SchemaChanges, dump: list[DumpEntry], needed: list[Requirement],
               missing: list[TableDefinition], roles: set[str]) -> None:
    """pg_dump's entries for the missing objects and tables, in pg_dump's order: what makes a table
    before its rows, its keys, indexes, foreign keys and triggers after them. Row security is
    refused by the load, so POLICY and ROW SECURITY entries are not made."""
    wanted_requirements = {(r.kind, r.schema, r.tag) for r in needed}
    tables = {(t.schema, t.name) for t in missing} | {(p.schema, p.name) for t in missing for p in t.partitions}
    sequences = {(t.schema, s) for t in missing for s in t.sequences}
    indexes = {(t.schema, i.name) for t in missing for i in t.indexes} | \
        {(p.schema, i) for t in missing for p in t.partitions for i in p.indexes}
    by_schema: dict[str, list[str]] = {}
    for schema, name in tables:
        by_schema.setdefault(schema, []).append(name)

    def of_table(tag: str, schema: str, separator: str = " ") -> bool:
        # pg_dump tags an entry of a table "<table> <name>" unquoted; a table's name may hold spaces.
        return any(tag.startswith(name + separator) for name in by_schema.get(schema, ()))

    for entry in dump:
        key = (entry.schema, entry.tag)
        if (entry.kind, entry.schema, entry.tag) in wanted_requirements:
            changes.structure.append(Statement(f"create {entry.kind.lower()} {_name(entry)}", entry.statement))
        elif entry.kind in ("TABLE", "TABLE ATTACH") and key in tables:
            changes.structure.append(Statement(f"{entry.kind.lower()} {_name(entry)}", entry.statement))
        elif entry.kind in ("SEQUENCE", "SEQUENCE OWNED BY") and key in sequences:
            changes.structure.append(Statement(f"{entry.kind.lower()} {_name(entry)}", entry.statement))
        elif entry.kind == "DEFAULT" and of_table(entry.tag, entry.schema):
            changes.structure.append(Statement(f"default {_name(entry)}", entry.statement))
        elif entry.kind in ("INDEX", "INDEX ATTACH") and key in indexes:
            changes.after_data.append(Statement(f"{entry.kind.lower()} {_name(entry)}", entry.statement))
        elif entry.kind in ("CONSTRAINT", "FK CONSTRAINT", "TRIGGER") and of_table(entry.tag, entry.schema):
            changes.after_data.append(Statement(f"{entry.kind.lower()} {_name(entry)}", entry.statement))
        elif entry.kind in ("COMMENT", "ACL") and _about(entry, tables, sequences, indexes):
            statement = entry.statement if entry.kind == "COMMENT" else _grants(entry, roles, changes)
            if statement:
                group = changes.after_data if entry.tag.startswith(("INDEX ", "CONSTRAINT ", "TRIGGER ")) \
                    else changes.structure
                group.append(Statement(f"{entry.kind.lower()} on {_name(entry)}", statement))


def _name(entry: DumpEntry) -> str:
    """How the log names an entry: schema.table for a table, `table constraint` as pg_dump tags it,
    `table shop.customers` for a comment or a grant on one."""
    if entry.kind in ("COMMENT", "ACL"):
        kind, _, rest = entry.tag.partition(" ")
        return f"{kind.lower()} {entry.schema + '.' if entry.schema else ''}{rest}"
    return f"{entry.schema}.{entry.tag}" if entry.schema else entry.tag


def _about(entry: DumpEntry, tables: set, sequences: set, indexes: set) -> bool:
    """Whether a COMMENT or ACL entry is on one of the tables (or a column, sequence, index,
    constraint or trigger of theirs). These tags quote names as SQL does where they need it."""
    kind, _, rest = entry.tag.partition(" ")
    quoted = lambda names: {(schema, _dump_ident(name)) for schema, name in names}  # noqa: E731
    if kind in ("TABLE", "SEQUENCE", "INDEX"):
        return (entry.schema, rest) in quoted(tables | sequences | indexes)
    if kind == "COLUMN":
        return any(rest.startswith(name + ".") for schema, name in quoted(tables) if schema == entry.schema)
    if kind in ("CONSTRAINT", "TRIGGER"):
        return (entry.schema, rest.rsplit(" ON ", 1)[-1]) in quoted(tables)
    return False


def _dump_ident(name: str) -> str:
    """A name as pg_dump writes it in a tag: quoted unless it is a plain lower-case identifier."""
    return name if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) else '"' + name.replace('"', '""') + '"'


def _grants(entry: DumpEntry, roles: set[str], changes: SchemaChanges) -> str:
    """The entry's GRANTs and REVOKEs to roles this environment has; the others listed as skipped."""
    kept = []
    for line in entry.statement.splitlines():
        match = _GRANTEE.search(line)
        if match:
            grantee = match[1].strip()
            name = grantee[1:-1].replace('""', '"') if grantee.startswith('"') else grantee
            if grantee.upper() != "PUBLIC" and name not in roles:
                changes.skipped_grants.append(line.strip())
                continue
        kept.append(line)
    return "\n".join(kept).strip()


def _table_changes(changes: SchemaChanges, wanted: TableDefinition, have: TableDefinition, exact: bool) -> None:
    table = wanted.ref.quoted
    key = wanted.key
    for column in wanted.columns:
        other = have.column(column.name)
        if other is None:
            _add_column(changes, wanted.ref, column)
            continue
        if not exact:
            continue
        name = quote_ident(column.name)
        if other.type != column.type:
            changes.structure.append(Statement(
                f"retype column {key}.{column.name} from {other.type} to {column.type}",
                f"ALTER TABLE {table} ALTER COLUMN {name} TYPE {column.type} USING {name}::{column.type}"))
        if other.default != column.default and not column.identity and not other.identity and not column.generated:
            changes.structure.append(Statement(
                f"default of {key}.{column.name}",
                f"ALTER TABLE {table} ALTER COLUMN {name} "
                + (f"SET DEFAULT {column.default}" if column.default is not None else "DROP DEFAULT")))
        if other.not_null and not column.not_null:
            changes.structure.append(Statement(f"drop not null on {key}.{column.name}",
                                               f"ALTER TABLE {table} ALTER COLUMN {name} DROP NOT NULL"))
        elif column.not_null and not other.not_null:
            changes.after_data.append(Statement(f"set not null on {key}.{column.name}",
                                                f"ALTER TABLE {table} ALTER COLUMN {name} SET NOT NULL"))
    if exact:
        names = {c.name for c in wanted.columns}
        for column in have.columns:
            if column.name not in names:
                changes.structure.append(Statement(f"drop column {key}.{column.name}",
                                                   f"ALTER TABLE {table} DROP COLUMN {quote_ident(column.name)}"))
    _indexes_and_constraints(changes, wanted, have, exact)
    partitions = {p.ref for p in have.partitions}
    for partition in wanted.partitions:
        if partition.ref not in partitions:
            # Made as a partition of the parent, it gains the parent's indexes under the names
            # PostgreSQL chooses, as production's did.
            changes.structure.append(Statement(
                f"create partition {partition.ref.key} of {key}",
                f"CREATE TABLE {partition.ref.quoted} PARTITION OF {table} {partition.bound}"))
    if exact:
        production_partitions = {p.ref for p in wanted.partitions}
        for partition in have.partitions:
            if partition.ref not in production_partitions:
                changes.structure.append(Statement(f"drop partition {partition.ref.key} of {key}",
                                                   f"DROP TABLE {partition.ref.quoted}"))


def _add_column(changes: SchemaChanges, ref: TableRef, column: ColumnDefinition) -> None:
    """ADD COLUMN before the rows; its NOT NULL (and identity) after them, when every row has a value."""
    table, name, key = ref.quoted, quote_ident(column.name), f"{ref.key}.{column.name}"
    if column.generated:
        clause = f" GENERATED ALWAYS AS ({column.generated}) STORED"
    else:
        clause = f" DEFAULT {column.default}" if column.default is not None and not column.identity else ""
    changes.structure.append(Statement(f"add column {key} ({column.type})",
                                       f"ALTER TABLE {table} ADD COLUMN {name} {column.type}{clause}"))
    if column.not_null:
        changes.after_data.append(Statement(f"set not null on {key}", f"ALTER TABLE {table} ALTER COLUMN {name} SET NOT NULL"))
    if column.identity:
        how = "ALWAYS" if column.identity == "a" else "BY DEFAULT"
        changes.after_data.append(Statement(f"identity on {key}",
                                            f"ALTER TABLE {table} ALTER COLUMN {name} ADD GENERATED {how} AS IDENTITY"))


def _indexes_and_constraints(changes: SchemaChanges, wanted: TableDefinition, have: TableDefinition,
                             exact: bool) -> None:
    table, key = wanted.ref.quoted, wanted.key
    have_constraints = {c.name: c for c in have.constraints}
    want_constraints = {c.name: c for c in wanted.constraints}
    have_indexes = {i.name: i for i in have.indexes if not i.constraint}
    want_indexes = {i.name: i for i in wanted.indexes if not i.constraint}
    if exact:
        # Foreign keys first: a key they lean on may be among what is dropped.
        for name, constraint in sorted(have_constraints.items(), key=lambda item: item[1].kind != "f"):
            other = want_constraints.get(name)
            if other is None or other.definition != constraint.definition:
                changes.structure.append(Statement(f"drop constraint {name} on {key}",
                                                   f"ALTER TABLE {table} DROP CONSTRAINT {quote_ident(name)}"))
        for name, index in have_indexes.items():
            other = want_indexes.get(name)
            if other is None or other.definition != index.definition:
                changes.structure.append(Statement(
                    f"drop index {name} on {key}", f"DROP INDEX {quote_ident(wanted.schema)}.{quote_ident(name)}"))
    for name, index in want_indexes.items():
        other = have_indexes.get(name)
        if other is None or (exact and other.definition != index.definition):
            changes.after_data.append(Statement(f"create index {name} on {key}", index.definition))
    # Keys before the foreign keys that may reference them.
    for name, constraint in sorted(want_constraints.items(), key=lambda item: item[1].kind == "f"):
        other = have_constraints.get(name)
        if other is None or (exact and other.definition != constraint.definition):
            changes.after_data.append(Statement(
                f"add constraint {name} on {key}",
                f"ALTER TABLE {table} ADD CONSTRAINT {quote_ident(name)} {constraint.definition}"))
