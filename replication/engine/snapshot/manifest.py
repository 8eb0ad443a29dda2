"""The snapshot manifest: what was captured, and how to tell a file is still what was captured."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

from ..pg.catalog import TableRef
from ..storage import MANIFEST_NAME, SnapshotLocation, as_location

# 2: objects may be compressed and encrypted; `bytes` counts the CSV, `stored_bytes` the object.
# 3: a large table may be split into parts (`parts`), one object each.
# 4: production's definitions travel with the rows: `definitions` (read from the catalog) and
#    `schema_dump` (pg_dump --schema-only, an object of its own).
FORMAT_VERSION = 4
SCHEMA_DUMP_NAME = "schema.sql"


@dataclass
class ColumnEntry:
    name: str
    type: str


@dataclass
class SequenceEntry:
    column: str
    sequence: str
    last_value: int
    is_called: bool


@dataclass
class PartEntry:
    """One object of a table captured in parts by ctid ranges; only the first carries the CSV header,
    so the parts in order are the table's CSV."""

    table: str  # schema.table, for messages
    file: str
    first_page: int
    last_page: int | None  # exclusive; None: to the end of the table
    rows: int
    bytes: int
    sha256: str
    stored_bytes: int
    compression: str = "none"
    encryption: str = "none"
    header: bool = False

    @property
    def key(self) -> str:
        return self.table


@dataclass
class DumpObject:
    """pg_dump --schema-only of production, taken in the snapshot's own point in time."""

    file: str
    bytes: int
    sha256: str
    stored_bytes: int
    compression: str = "none"
    encryption: str = "none"
    header: bool = False

    @property
    def key(self) -> str:
        return "production's definitions (pg_dump --schema-only)"


@dataclass
class TableEntry:
    schema: str
    name: str
    file: str
    columns: list[ColumnEntry]
    rows: int
    bytes: int
    sha256: str
    content_checksum: str
    seconds: float
    sequences: list[SequenceEntry] = field(default_factory=list)
    # The object as stored: `sha256` above is of these bytes (the CSV itself when neither applies).
    stored_bytes: int = -1
    compression: str = "none"
    encryption: str = "none"
    # A split table's objects, in order; empty for a table stored as one object (`file`).
    parts: list[PartEntry] = field(default_factory=list)

    header = True  # as an object: a whole table's CSV begins with its header

    @property
    def objects(self) -> list:
        """What the table is stored as: its parts, or itself as one object."""
        return list(self.parts) if self.parts else [self]

    def __post_init__(self) -> None:
        if self.stored_bytes < 0:  # a format 1 manifest: the object is the CSV file
            self.stored_bytes = self.bytes

    @property
    def ref(self) -> TableRef:
        return TableRef(self.schema, self.name)

    @property
    def key(self) -> str:
        return self.ref.key

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


class TableTotals:
    """Rows and CSV bytes over `tables`: of a snapshot, and of what a load wrote."""

    tables: list

    @property
    def total_rows(self) -> int:
        return sum(t.rows for t in self.tables)

    @property
    def total_bytes(self) -> int:
        return sum(t.bytes for t in self.tables)


@dataclass
class Manifest(TableTotals):
    partition: str
    captured_at: str
    server_version: str
    source: str
    include: list[str]
    exclude: list[str]
    tables: list[TableEntry]
    format_version: int = FORMAT_VERSION
    # schema.table of every table the selection matched when the capture began.
    selected: list[str] = field(default_factory=list)
    # engine.schema.definitions.Definitions.to_plain() of the captured tables; None before format 4.
    definitions: dict | None = None
    schema_dump: DumpObject | None = None

    @property
    def objects(self) -> list:
        """Every stored object: the tables' and the schema dump."""
        found = [part for table in self.tables for part in table.objects]
        return found + ([self.schema_dump] if self.schema_dump is not None else [])

    @property
    def stored_bytes(self) -> int:
        return sum(t.stored_bytes for t in self.tables)

    def table(self, key: str) -> TableEntry:
        for entry in self.tables:
            if entry.key == key:
                return entry
        raise KeyError(key)

    def to_json(self) -> str:
        """The manifest with one table a line: still readable, and written by json's C encoder, which
        indented output cannot use (on a thousand tables that was a third of a second)."""
        data = _plain(self)
        tables = data.pop("tables")
        head = json.dumps(data)[:-1]
        lines = ",\n".join("  " + json.dumps(table) for table in tables)
        return f'{head}, "tables": [\n{lines}\n]}}\n' if tables else f'{head}, "tables": []}}\n'


    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        raw = json.loads(text)
        if raw.get("schema_dump") is not None:
            raw["schema_dump"] = DumpObject(**raw["schema_dump"])
        tables = [
            TableEntry(
                **{
                    **t,
                    "columns": [ColumnEntry(**c) for c in t["columns"]],
                    "sequences": [SequenceEntry(**s) for s in t.get("sequences", [])],
                    "parts": [PartEntry(**p) for p in t.get("parts", [])],
                }
            )
            for t in raw.pop("tables")
        ]
        return cls(**raw, tables=tables)


def _plain(value):
    """dataclasses.asdict without its deep copies, which cost seconds on a manifest of a thousand tables."""
    if is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def write_manifest(snapshot: SnapshotLocation | Path, manifest: Manifest) -> str:
    """Write the manifest last and atomically: its presence marks the snapshot complete."""
    location = as_location(snapshot)
    location.write_manifest_bytes(manifest.to_json().encode("utf-8"))
    return f"{location.url}/{MANIFEST_NAME}"


def read_manifest(snapshot: SnapshotLocation | Path) -> Manifest | None:
    data = as_location(snapshot).read_manifest_bytes()
    return None if data is None else Manifest.from_json(data.decode("utf-8"))


def remove_manifest(snapshot: SnapshotLocation | Path) -> None:
    """Mark a snapshot incomplete before it is rewritten, so nothing loads a half-new snapshot."""
    as_location(snapshot).remove_manifest()
