"""Roles, databases and schemas for the embedded default, as a DBA would set them up.

Production is read through a role that may only SELECT; each environment is written by its own
role, which owns that environment's tables (its migrations ran as it).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from .embedded import EmbeddedPostgres
from .schema import SCHEMA_SQL
from .seed import seed

SCHEMAS = ("shop", "Ops")


@dataclass(frozen=True)
class Account:
    database: str
    user: str
    password: str


def ensure_role(admin: psycopg.Connection, user: str, password: str) -> None:
    exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    admin.execute(
        sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(sql.SQL(verb), sql.Identifier(user), sql.Literal(password))
    )


def ensure_database(admin: psycopg.Connection, name: str, owner: str) -> None:
    if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner)))


def provision_source(server: EmbeddedPostgres, account: Account, *, scale: float) -> bool:
    """Create production with its schema, a read-only role, and data; returns True when it seeded."""
    with server.connect() as admin:
        ensure_role(admin, account.user, account.password)
        ensure_database(admin, account.database, "postgres")
    with server.connect(account.database) as conn:
        conn.execute(SCHEMA_SQL)
        for schema in SCHEMAS:
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), sql.Identifier(account.user)))
            conn.execute(
                sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {0} TO {1}; GRANT SELECT ON ALL SEQUENCES IN SCHEMA {0} TO {1}").format(
                    sql.Identifier(schema), sql.Identifier(account.user)
                )
            )
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(account.database), sql.Identifier(account.user)))
        empty = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM shop.customers)").fetchone()[0]
        if empty:
            seed(conn, scale)
        return empty


def provision_target(server: EmbeddedPostgres, account: Account, *, with_schema: bool = True) -> None:
    """Create an environment database owned by its loader role, with the schema created as that role
    (or left empty, `with_schema=False`, for an environment that takes production's definitions)."""
    with server.connect() as admin:
        ensure_role(admin, account.user, account.password)
        ensure_database(admin, account.database, account.user)
    if with_schema:
        with server.connect(account.database, user=account.user, password=account.password) as conn:
            conn.execute(SCHEMA_SQL)


def provision_storage(server: EmbeddedPostgres, account: Account) -> None:
    with server.connect() as admin:
        ensure_role(admin, account.user, account.password)
        ensure_database(admin, account.database, account.user)
