"""Before a load writes: how the environment's definitions meet production's, under its `schema:` mode.

| mode       | what production has and the environment lacks  | what the environment has and production lacks |
| strict     | fails before writing, naming it                | columns take their defaults                   |
| shared     | skipped, and reported                          | kept                                          |
| add        | created from production's definitions          | kept; nothing dropped or retyped              |
| production | the replicated tables take production's        | dropped from the replicated tables            |
|            | definitions exactly                            |                                               |
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import psycopg

from ..errors import SchemaMismatchError
from ..pg.catalog import TableRef, columns_of
from ..snapshot.manifest import Manifest, TableEntry
from ..storage import SnapshotLocation
from .changes import SchemaChanges, plan_changes
from .definitions import Definitions, read_definitions
from .drift import Difference, compare
from .dump import DumpEntry, parse_dump

SCHEMA_MODES = ("strict", "shared", "add", "production")


@dataclass
class SchemaPlan:
    """What the load does about definitions: the manifest it loads, what it skips, what it changes."""

    mode: str
    manifest: Manifest  # the tables and columns the load writes
    differences: list[Difference] = field(default_factory=list)  # before the load
    skipped_tables: list[str] = field(default_factory=list)
    # Columns production has and the environment lacks (shared): their values are read and dropped.
    skipped_columns: dict[str, list[str]] = field(default_factory=dict)
    changes: SchemaChanges = field(default_factory=SchemaChanges)
    # Production's full entries of the tables whose columns the environment lacks: the CSV's columns.
    sources: dict[TableRef, TableEntry] = field(default_factory=dict)

    @property
    def in_transaction_only(self) -> str:
        """Why this load must run in one transaction (a swap cannot yet carry it), or ''."""
        if self.changes:
            return f"schema: {self.mode} changes definitions ({len(self.changes.described)} statements)"
        return ""


def definitions_of(manifest: Manifest) -> Definitions | None:
    return Definitions.from_plain(manifest.definitions) if manifest.definitions is not None else None


def read_dump(location: SnapshotLocation, manifest: Manifest) -> list[DumpEntry] | None:
    """pg_dump's entries from the snapshot, read through its sha256; None when it holds none."""
    if manifest.schema_dump is None:
        return None
    chunks: list[bytes] = []
    location.read_object_into(manifest.schema_dump, chunks.append)
    return parse_dump(b"".join(chunks).decode("utf-8"))


def plan_schema(conn: psycopg.Connection, location: SnapshotLocation, manifest: Manifest, environment: str,
                mode: str) -> SchemaPlan:
    """Read the environment's catalog (nothing written) and decide, or fail naming what stops `mode`."""
    production = definitions_of(manifest)
    refs = [entry.ref for entry in manifest.tables]
    present = read_definitions(conn, refs)
    differences = compare(production, present) if production is not None else []
    if mode == "strict":
        return SchemaPlan(mode, manifest, differences)
    if mode == "shared":
        return _shared(manifest, environment, production, present, differences)
    if production is None:
        raise SchemaMismatchError(
            f"{environment}: schema: {mode} needs production's definitions, and this snapshot was taken by an "
            "older version that did not record them. Materialize prod_snapshot again with refresh: true, or use "
            "schema: strict or shared for it. Nothing was written.")
    dump = read_dump(location, manifest)
    changes = plan_changes(conn, mode, environment, production, present, dump)
    return SchemaPlan(mode, manifest, differences, changes=changes)


def _shared(manifest: Manifest, environment: str, production: Definitions | None, present: Definitions,
            differences: list[Difference]) -> SchemaPlan:
    """Load what both have: tables the environment lacks are skipped, and so are columns."""
    entries, skipped_tables, skipped_columns, sources = [], [], {}, {}
    for entry in manifest.tables:
        have = present.table(entry.ref)
        if have is None:
            skipped_tables.append(entry.key)
            continue
        names = {c.name for c in have.columns}
        loaded = within(entry, names)
        missing = [c for c in entry.column_names if c not in names]
        if not loaded.columns:
            raise SchemaMismatchError(
                f"{environment}: table {entry.key} has none of production's columns ({', '.join(missing)}), so "
                "schema: shared has nothing to load into it. Nothing was written.")
        if missing:
            skipped_columns[entry.key] = missing
            sources[entry.ref] = entry
        entries.append(loaded)
    if production is not None:
        for table in production.tables:
            have = present.table(table.ref)
            if have is None:
                continue  # skipped whole
            partitions = {p.ref for p in have.partitions}
            lacking = [p.ref.key for p in table.partitions if p.ref not in partitions]
            if lacking:
                raise SchemaMismatchError(
                    f"{environment}: production's partitioned table {table.key} has partitions this environment "
                    f"lacks ({', '.join(lacking)}), and their rows have nowhere to go. Create them with the "
                    f"{environment} migrations, or use schema: add, which creates them. Nothing was written.")
    if not entries:
        raise SchemaMismatchError(
            f"{environment}: none of the snapshot's tables exists here ({', '.join(skipped_tables)}), so schema: "
            "shared has nothing to load. Use schema: production to create them. Nothing was written.")
    effective = dataclasses.replace(manifest, tables=entries)
    return SchemaPlan("shared", effective, differences, skipped_tables, skipped_columns, sources=sources)


def loaded_view(conn: psycopg.Connection, manifest: Manifest, kept_tables: set[str] = frozenset()) -> Manifest:
    """The manifest as an environment was loaded from it: its tables that exist there, with the
    columns the environment has, less the tables `keep: all` never replaces. The checks compare
    with this, as the load compared, whatever the environment's schema mode."""
    found = columns_of(conn, [entry.ref for entry in manifest.tables])
    entries = [within(entry, {c.name for c in found[entry.ref]}) for entry in manifest.tables
               if entry.ref in found and entry.key not in kept_tables]
    return dataclasses.replace(manifest, tables=entries)


def within(entry: TableEntry, names: set[str]) -> TableEntry:
    """`entry` with only the columns in `names` (itself when it has no others)."""
    if all(c in names for c in entry.column_names):
        return entry
    return dataclasses.replace(entry, columns=[c for c in entry.columns if c.name in names])
