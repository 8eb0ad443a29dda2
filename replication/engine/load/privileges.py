"""Every privilege a load needs on the target, checked before anything is written.

Companies withhold privileges a tool might take for granted: CREATE on the schema (PostgreSQL 15's
default for `public`), TRUNCATE on a table another role owns, TEMP on the database, UPDATE on a
sequence. A privilege the faster path needs (ownership, CREATE to rebuild indexes) only sends a
table down the slower path that works (engine.load.rebuild); one that no path can do without is named
here, with the GRANT that gives it, before the write transaction begins.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from ..pg.catalog import TableRef, quote_ident
from ..pg.sequences import owned_sequences
from ..errors import PrivilegeError


@dataclass(frozen=True)
class Missing:
    """One privilege the load needs and the role lacks: what it is for, and the GRANT that gives it."""

    privilege: str
    on: str  # the object, as SQL names it
    needed_for: str

    def grant(self, role: str) -> str:
        return f"GRANT {self.privilege} ON {self.on} TO {quote_ident(role)};"


# Per table: what COPY and INSERT write with, what TRUNCATE and the ACCESS EXCLUSIVE lock need,
# and what the verification reads with.
_TABLE_PRIVILEGES = (("INSERT", "COPY writes the rows"), ("TRUNCATE", "the old rows are removed with TRUNCATE"),
                     ("SELECT", "the rows are verified against the snapshot"))

_SCHEMAS = """
SELECT w.nsp, pg_catalog.has_schema_privilege(n.oid, 'USAGE')
FROM (SELECT DISTINCT unnest(%s::pg_catalog.text[]) AS nsp) w
JOIN pg_catalog.pg_namespace n ON n.nspname = w.nsp
ORDER BY 1
"""

# The loaded tables themselves: a partitioned table's COPY, SELECT and TRUNCATE check the
# privileges of the table named, not of each partition.
_TABLES = """
SELECT t.oid::pg_catalog.regclass::pg_catalog.text,
       pg_catalog.has_table_privilege(t.oid, 'INSERT'), pg_catalog.has_table_privilege(t.oid, 'TRUNCATE'),
       pg_catalog.has_table_privilege(t.oid, 'SELECT')
FROM unnest(%s::pg_catalog.regclass[]) AS t(oid)
ORDER BY 1
"""

# Sequences behind the loaded tables' serial and identity columns: set after COMMIT with setval,
# and read by the check that compares them with the loaded rows.
_SEQUENCE_PRIVILEGES = (("UPDATE", "the sequence is moved past the loaded rows with setval"),
                        ("SELECT", "the check reads where the sequence stands"))
_SEQUENCES = """
SELECT s, pg_catalog.has_sequence_privilege(s, 'UPDATE'), pg_catalog.has_sequence_privilege(s, 'SELECT')
FROM unnest(%s::pg_catalog.text[]) AS s
ORDER BY 1
"""


def missing_privileges(conn: psycopg.Connection, tables: list[TableRef], *, staging: bool) -> list[Missing]:
    """What the connected role lacks to load `tables`; `staging`: masking or a subset stages rows in
    temporary tables, which needs TEMP on the database. Reads the catalog only."""
    schemas = conn.execute(_SCHEMAS, ([t.schema for t in tables],)).fetchall()
    missing = [Missing("USAGE", f"SCHEMA {quote_ident(name)}", "its tables are reached through it")
               for name, usable in schemas if not usable]
    if missing:
        return missing  # the tables of a schema without USAGE cannot even be named
    regclasses = [t.ident.as_string(conn) for t in tables]
    for regclass, *granted in conn.execute(_TABLES, (regclasses,)).fetchall():
        missing += [Missing(privilege, f"TABLE {regclass}", why)
                    for (privilege, why), has in zip(_TABLE_PRIVILEGES, granted) if not has]
    sequences = sorted({owned.sequence for owned in owned_sequences(conn, tables)})
    for sequence, *granted in conn.execute(_SEQUENCES, (sequences,)).fetchall():
        missing += [Missing(privilege, f"SEQUENCE {sequence}", why)
                    for (privilege, why), has in zip(_SEQUENCE_PRIVILEGES, granted) if not has]
    if staging:
        database, may_stage = conn.execute(
            "SELECT pg_catalog.current_database(), "
            "pg_catalog.has_database_privilege(pg_catalog.current_database(), 'TEMP')").fetchone()
        if not may_stage:
            missing.append(Missing("TEMPORARY", f"DATABASE {quote_ident(database)}",
                                   "masked and subset tables are staged in temporary tables"))
    return missing


def require_privileges(conn: psycopg.Connection, environment: str, tables: list[TableRef], *, staging: bool) -> None:
    """Fail before anything is written when the role lacks a privilege that no path can do without."""
    missing = missing_privileges(conn, tables, staging=staging)
    if not missing:
        return
    role = conn.execute("SELECT current_user").fetchone()[0]
    lines = "\n".join(f"  {m.grant(role)}  -- {m.needed_for}" for m in missing)
    raise PrivilegeError(
        f"{environment}: the loading role {role} lacks {len(missing)} privilege(s) the load needs, so nothing "
        f"was written. Have the tables' owner (or a superuser) run:\n{lines}\nthen run the partition again. "
        "Retrying will not help, so no retry is scheduled."
    )
