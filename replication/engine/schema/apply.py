"""Running the schema changes inside the load's transaction: locks first, then pg_dump's settings, then each statement."""

from __future__ import annotations

import psycopg

from ..errors import SchemaMismatchError
from ..pg.catalog import columns_of
from ..pg.locks import LockPolicy, LockWait, acquire, lock_statement
from ..privacy.scrub import SensitiveColumns, describe_error
from ..progress import Log
from ..snapshot.manifest import Manifest
from .changes import Statement


def lock_existing(conn: psycopg.Connection, manifest: Manifest, policy: LockPolicy, environment: str,
                  log: Log | None) -> LockWait:
    """ACCESS EXCLUSIVE on the snapshot's tables the environment already has, under its lock policy,
    before any definition changes: a blocker costs time, never a half-changed schema."""
    present = list(columns_of(conn, [entry.ref for entry in manifest.tables]))
    if not present:
        return LockWait()
    relations = [ref.ident.as_string(conn) for ref in present]
    return acquire(conn, lock_statement(relations, "ACCESS EXCLUSIVE"), relations, "ACCESS EXCLUSIVE", policy,
                   who=environment, replicated=relations, log=log)


def apply_statements(conn: psycopg.Connection, statements: list[Statement], log: Log | None, environment: str) -> None:
    """Each statement in the open transaction, as pg_restore runs pg_dump's: function bodies not
    checked against objects created later (set for this transaction only)."""
    if not statements:
        return
    conn.execute("SELECT pg_catalog.set_config('check_function_bodies', 'false', true)")
    for statement in statements:
        if log is not None:
            log(f"{environment}: schema: {statement.what}")
        try:
            conn.execute(statement.sql)  # type: ignore[arg-type]  # pg_dump's text, no parameters
        except (psycopg.DataError, psycopg.ProgrammingError, psycopg.IntegrityError, psycopg.NotSupportedError) as exc:
            # PostgreSQL's message, DETAIL and HINT, with any value it quotes hidden.
            raise SchemaMismatchError(
                f"{environment}: could not {statement.what}: {describe_error(exc, SensitiveColumns())}\nThe load was "
                "rolled back; the environment's schema and data are as they were.") from None
