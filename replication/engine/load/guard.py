"""Never write to production: refuse a target that is prod under any name.

Two checks, both before the load writes anything: the addresses (the same port and database, and
a host that is the same name or resolves to a shared address), then, when both servers answer,
the server's `system_identifier` and the database name, which catch a second name the resolver
cannot see through (another interface, a proxy, a DNS alias to another address of the host).
"""

from __future__ import annotations

import socket

import psycopg

from ..pg.connection import Address
from ..errors import ProductionTargetError


def _resolved(host: str, port: int) -> set[str]:
    try:
        return {info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    except OSError:
        return set()


def refuse_production_address(environment: str, target: Address, prod: Address, variable: str = "") -> None:
    """Fail when the target's address leads to production's database."""
    if target.port != prod.port or target.dbname != prod.dbname:
        return
    same_host = target.host.lower() == prod.host.lower()
    shared = _resolved(target.host, target.port) & _resolved(prod.host, prod.port)
    if same_host or shared:
        via = f" ({target.host} and {prod.host} both resolve to {', '.join(sorted(shared))})" if shared and not same_host else ""
        raise ProductionTargetError(
            f"{environment}: the target {target} is the production database {prod}{via}. Loading would "
            f"TRUNCATE production, so it was refused before connecting. Point {variable or 'its connection variable'} "
            "at the environment's own database."
        )


def server_identity(conn: psycopg.Connection) -> tuple[str, str] | None:
    """(system_identifier, database), or None where the role may not read pg_control_system()."""
    try:
        with conn.transaction():
            row = conn.execute(
                "SELECT system_identifier::text, pg_catalog.current_database() FROM pg_catalog.pg_control_system()"
            ).fetchone()
    except psycopg.errors.InsufficientPrivilege:
        return None
    return row[0], row[1]


def refuse_same_database(environment: str, target: Address, target_identity, prod_identity, variable: str = ""
                         ) -> None:
    if target_identity is None or prod_identity is None or target_identity != prod_identity:
        return
    raise ProductionTargetError(
        f"{environment}: the target {target} is production under another name (same server "
        f"system_identifier {target_identity[0]}, same database {target_identity[1]!r}). Loading would "
        f"TRUNCATE production, so it was refused before any write. Point {variable or 'its connection variable'} "
        "at the environment's own database."
    )
