"""Opening connections from a credential-free address plus a separate user and password."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import psycopg
from psycopg.conninfo import conninfo_to_dict

from ..errors import ConfigurationError
from .session import libpq_options, pin_versioned_settings

# Opens a connection to one database for the length of a `with` block (a resource's get_connection).
Connect = Callable[[], AbstractContextManager[psycopg.Connection]]

_HOST_PORT_DB = re.compile(r"^(?P<host>\[[^\]]+\]|[^:/\s]+)(?::(?P<port>\d+))?/(?P<dbname>[^/?\s]+)$")
_CREDENTIAL_KEYS = {"user", "password", "passfile"}


@dataclass(frozen=True)
class Address:
    """Where a database lives: host, port, database name and extra libpq parameters (no secrets)."""

    host: str
    port: int
    dbname: str
    params: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}/{self.dbname}"


def parse_address(value: str, variable: str) -> Address:
    """Parse `host:port/dbname` or `postgresql://host:port/dbname?sslmode=...` without credentials.

    The value itself never appears in an error: a user who pasted a password into it must not
    see it echoed into logs.
    """
    value = (value or "").strip()
    if not value:
        raise ConfigurationError(f"{variable} is empty: set it to host:port/dbname.")
    if "://" not in value:
        match = _HOST_PORT_DB.match(value)
        if not match:
            raise ConfigurationError(
                f"{variable} is not of the form host:port/dbname or postgresql://host:port/dbname."
            )
        return Address(match["host"].strip("[]"), int(match["port"] or 5432), match["dbname"])
    if not value.startswith(("postgresql://", "postgres://")):
        raise ConfigurationError(f"{variable} must start with postgresql:// when given as a URI.")
    if "@" in value.split("?", 1)[0]:
        raise ConfigurationError(
            f"{variable} holds credentials; put the user in its _USER and the password in its "
            "_PASSWORD variable and remove them from the address."
        )
    try:
        params = conninfo_to_dict(value)
    except psycopg.ProgrammingError:
        raise ConfigurationError(f"{variable} is not a valid PostgreSQL URI.") from None
    if _CREDENTIAL_KEYS & params.keys():
        raise ConfigurationError(
            f"{variable} holds credentials; user and password come only from their own variables."
        )
    host = params.pop("host", None)
    dbname = params.pop("dbname", None)
    if not host or not dbname:
        raise ConfigurationError(f"{variable} must name both a host and a database.")
    port = int(params.pop("port", 5432))
    return Address(host, port, dbname, {k: str(v) for k, v in params.items()})


def connect(
    address: Address,
    user: str,
    password: str,
    *,
    application_name: str = "replication",
    connect_timeout: int = 10,
) -> psycopg.Connection:
    """Open a connection with the pinned session settings; the caller owns and closes it."""
    conn = psycopg.connect(
        host=address.host,
        port=address.port,
        dbname=address.dbname,
        user=user,
        password=password,
        application_name=application_name,
        connect_timeout=connect_timeout,
        options=libpq_options(),
        **address.params,
    )
    try:
        pin_versioned_settings(conn)
    except BaseException:
        conn.close()
        raise
    return conn
