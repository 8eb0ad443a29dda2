"""Keeping production values out of error messages, logs and metadata.

PostgreSQL's errors quote data: `Key (email)=(ada@example.org) already exists`, `Failing row
contains (...)`, `COPY customers, line 3, column email: "..."`, `invalid input syntax for type
date: "..."`. Such a message ends up in Dagster's event log, readable by everyone with access to
the UI, so before it is shown the values of columns that an environment masks or that look
personal are hidden. A table the rules know nothing about is treated as personal.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

import psycopg

from ..snapshot.manifest import Manifest, TableEntry
from .mask import looks_personal

HIDDEN = "(value hidden: masked or personal column)"

_KEY = re.compile(r"\((?P<cols>[^()]*)\)=\((?P<vals>.*)\)(?P<tail>[^)]*)$")
_FAILING_ROW = re.compile(r"(Failing row contains )\(.*\)(\.?)$")
_COPY_COLUMN = re.compile(r'^(COPY (?P<table>.+?), line \d+, column (?P<col>.+?): )"(?P<val>.*)"\s*$', re.DOTALL)
_COPY_LINE = re.compile(r'^(COPY (?P<table>.+?), line \d+: )"(?P<val>.*)"\s*$', re.DOTALL)
_QUOTED_VALUE = re.compile(r': "(.*)"$', re.DOTALL)
_RANGE_VALUE = re.compile(r'^(value )"(.*)"( is out of range)', re.DOTALL)


def hidden_columns(entry: TableEntry, masked: Collection[str]) -> set[str]:
    """Columns of a snapshot table whose values are never shown: masked by an environment
    (`masked` holds schema.table.column keys), or looking personal."""
    return {c.name for c in entry.columns if f"{entry.key}.{c.name}" in masked or looks_personal(c.name, c.type)}


class SensitiveColumns:
    """Which columns' values may not be shown: masked by any environment, or looking personal."""

    def __init__(self) -> None:
        self._tables: dict[tuple[str, str], set[str]] = {}  # (schema, table) -> sensitive columns

    def learn(self, manifest: Manifest, masked: Iterable[str] = ()) -> SensitiveColumns:
        """The snapshot's tables and columns; `masked` holds schema.table.column keys."""
        masked = set(masked)
        for entry in manifest.tables:
            self._tables[(entry.schema, entry.name)] = hidden_columns(entry, masked)
        return self

    def _columns(self, table: str | None, schema: str | None = None) -> set[str] | None:
        """The table's sensitive columns; None when the table is not known."""
        if not table:
            return None
        if schema:
            return self._tables.get((schema, table))
        matches = [cols for (_, name), cols in self._tables.items() if name == table]
        return set().union(*matches) if matches else None

    def hides_column(self, table: str | None, column: str, schema: str | None = None) -> bool:
        columns = self._columns(table, schema)
        return columns is None or column in columns or looks_personal(column, "")

    def hides_row(self, table: str | None, schema: str | None = None) -> bool:
        columns = self._columns(table, schema)
        return columns is None or bool(columns)


def scrub_detail(detail: str, sensitive: SensitiveColumns, table: str | None, schema: str | None) -> str:
    lines = []
    for line in detail.splitlines():
        key = _KEY.search(line)
        if key and any(sensitive.hides_column(table, col.strip().strip('"'), schema) for col in key["cols"].split(",")):
            line = line[: key.start()] + f"({key['cols']})={HIDDEN}" + key["tail"]
        elif _FAILING_ROW.search(line) and sensitive.hides_row(table, schema):
            line = _FAILING_ROW.sub(lambda m: f"{m[1]}{HIDDEN}{m[2]}", line)
        lines.append(line)
    return "\n".join(lines)


def scrub_context(context: str, sensitive: SensitiveColumns) -> tuple[str, bool]:
    """The COPY line of a context with its value hidden where needed, and whether a value was shown."""
    line = context.strip().splitlines()[0] if context.strip() else ""
    column = _COPY_COLUMN.match(line)
    if column:
        if sensitive.hides_column(column["table"], column["col"]):
            return f"{column[1]}{HIDDEN}", False
        return line, True
    whole = _COPY_LINE.match(line)
    if whole:
        return (f"{whole[1]}{HIDDEN}", False) if sensitive.hides_row(whole["table"]) else (line, True)
    return "", False


def scrub_primary(primary: str, sqlstate: str | None, value_allowed: bool) -> str:
    """Data errors (class 22) quote the offending value at the end of the message, or, out of range,
    at its start."""
    if sqlstate and sqlstate.startswith("22") and not value_allowed:
        primary = _RANGE_VALUE.sub(lambda m: f"{m[1]}{HIDDEN}{m[3]}", primary)  # value "…" is out of range for …
        return _QUOTED_VALUE.sub(f": {HIDDEN}", primary)
    return primary


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def describe_error(exc: psycopg.Error, sensitive: SensitiveColumns) -> str:
    """PostgreSQL's message, SQLSTATE, DETAIL, HINT and the COPY line it failed on, values hidden
    (every quoted value, with a `sensitive` that knows no table)."""
    diag = exc.diag
    if exc.sqlstate is None or diag is None or not diag.message_primary:
        return first_line(exc)
    context, value_shown = scrub_context(diag.context or "", sensitive)
    parts = [f"{scrub_primary(diag.message_primary, exc.sqlstate, value_shown)} [SQLSTATE {exc.sqlstate}]"]
    if diag.message_detail:
        parts.append(f"DETAIL: {scrub_detail(diag.message_detail, sensitive, diag.table_name, diag.schema_name)}")
    if diag.message_hint:
        parts.append(f"HINT: {diag.message_hint}")
    if context:
        parts.append(f"CONTEXT: {context}")
    return "\n".join(parts)
