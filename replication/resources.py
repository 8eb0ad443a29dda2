"""Dagster resources: per-environment PostgreSQL credentials and the snapshot folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psycopg
from pydantic import PrivateAttr

from .engine.connection import Address, connect, parse_address

ENVIRONMENTS = ("PROD", "DEV", "STAGING", "QA")
DEFAULT_SNAPSHOT_DIR = "/tmp"


class PostgresResource(dg.ConfigurableResource):
    """One PostgreSQL database: its address from `{ENV}_DB_CONNECTION`, credentials from their own variables.

    `connection` is `host:port/dbname` or a `postgresql://host:port/dbname?sslmode=...` URI with no
    user or password in it; `host`, `port` and `database` are read from it.
    """

    environment: str
    connection: str
    user: str
    password: str
    connect_timeout: int = 10

    _address: Address | None = PrivateAttr(default=None)

    @property
    def address(self) -> Address:
        if self._address is None:
            self._address = parse_address(self.connection, f"{self.environment}_DB_CONNECTION")
        return self._address

    @property
    def host(self) -> str:
        return self.address.host

    @property
    def port(self) -> int:
        return self.address.port

    @property
    def database(self) -> str:
        return self.address.dbname

    @property
    def label(self) -> str:
        """Where this resource points, safe to log: no user, no password."""
        return f"{self.environment.lower()} ({self.address})"

    @contextmanager
    def get_connection(self) -> Iterator[psycopg.Connection]:
        conn = connect(
            self.address,
            self.user,
            self.password,
            application_name=f"replication:{self.environment.lower()}",
            connect_timeout=self.connect_timeout,
        )
        try:
            yield conn
        finally:
            conn.close()


def postgres_resource(environment: str) -> PostgresResource:
    """The resource for PROD, DEV, STAGING or QA, reading its three variables at run time."""
    return PostgresResource(
        environment=environment,
        connection=dg.EnvVar(f"{environment}_DB_CONNECTION"),
        user=dg.EnvVar(f"{environment}_DB_USER"),
        password=dg.EnvVar(f"{environment}_DB_PASSWORD"),
    )


class SnapshotStore(dg.ConfigurableResource):
    """The folder that holds one snapshot per partition, from `SNAPSHOT_DIR` (default `/tmp`).

    Read when a step runs, so a step container sees the path of its own mounted volume.
    """

    directory: str | None = None

    @property
    def root(self) -> Path:
        return Path(self.directory or os.environ.get("SNAPSHOT_DIR") or DEFAULT_SNAPSHOT_DIR)

    def path_for(self, partition_key: str) -> Path:
        return self.root / f"prod_snapshot_{partition_key.replace('-', '')}"
