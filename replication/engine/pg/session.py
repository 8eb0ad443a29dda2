"""Session settings that the data path depends on, pinned on every connection, and how transactions begin.

CSV text produced by COPY depends on the session: dates follow DateStyle, timestamptz follows
TimeZone, floats follow extra_float_digits, bytea follows bytea_output. Servers and databases can
set any defaults they like, so each connection sets these itself; then a value leaves prod and
enters a target as exactly the same text, and checksums computed on both sides agree.

Timeouts are pinned for the same reason, as pg_dump pins them in its own session: companies give
roles and databases a `statement_timeout` or an `idle_in_transaction_session_timeout` far shorter
than a COPY of a large table, and a session that inherits them is cancelled half-way, every day,
in a way no retry can fix. `lock_timeout` is pinned to 0 too: where the engine waits for a lock,
it bounds the wait itself (engine.pg.locks), in short attempts that name who is in the way.
"""

from __future__ import annotations

import psycopg
from psycopg import IsolationLevel

PINNED_SETTINGS: dict[str, str] = {
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "TimeZone": "UTC",
    "extra_float_digits": "3",
    "bytea_output": "hex",
    "client_encoding": "UTF8",
    "standard_conforming_strings": "on",
    # Every name the engine writes is schema-qualified; an empty path keeps user objects from
    # shadowing catalog functions, as pg_dump does.
    "search_path": "pg_catalog",
    "statement_timeout": "0",
    "idle_in_transaction_session_timeout": "0",
    "lock_timeout": "0",
}

# Settings that only newer servers know: naming them in the startup packet would make an older
# server refuse the connection, so they are set once connected, where the server has them.
VERSIONED_SETTINGS: tuple[tuple[int, str, str], ...] = (
    (140000, "idle_session_timeout", "0"),
    (170000, "transaction_timeout", "0"),
)


def libpq_options() -> str:
    """The settings as a libpq `options` string, applied by the server at connection start.

    Options from the client outrank the role's and the database's defaults (ALTER ROLE ... SET).
    """
    return " ".join(f"-c {name}={value.replace(' ', '')}" for name, value in PINNED_SETTINGS.items())


def pin_versioned_settings(conn: psycopg.Connection) -> None:
    """Set what `libpq_options` cannot name for every server version; leaves the connection idle."""
    version = conn.info.server_version
    statements = [f"SET {name} = {value}" for since, name, value in VERSIONED_SETTINGS if version >= since]
    if statements:
        previous = conn.autocommit
        conn.autocommit = True
        try:
            conn.execute("; ".join(statements))
        finally:
            conn.autocommit = previous


def prepare_transaction(conn: psycopg.Connection, isolation: IsolationLevel, *, read_only: bool) -> None:
    """End whatever the connection had open and set how its next transaction begins.

    psycopg applies these at the next BEGIN; the caller opens it with `conn.transaction()`.
    """
    conn.rollback()
    conn.autocommit = False
    conn.isolation_level = isolation
    conn.read_only = read_only
