"""Dagster resources: per-environment PostgreSQL credentials and the snapshot folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psycopg
from pydantic import PrivateAttr

from .config import SOURCE, ReplicationConfig, env_vars_for
from .engine.connection import Address, connect, parse_address
from .engine.store import snapshot_path

DEFAULT_SNAPSHOT_DIR = "/tmp"
SNAPSHOT_STORE = "snapshot_store"


def target_resource_key(environment: str) -> str:
    """`dev` -> `dev_db_target`: the resource its asset `dev_db` writes through."""
    return f"{environment}_db_target"


class PostgresResource(dg.ConfigurableResource):
    """One PostgreSQL database: its address from `{ENV}_DB_CONNECTION`, credentials from their own variables.

    `connection` is `host:port/dbname` or a `postgresql://host:port/dbname?sslmode=...` URI with no
    user or password in it.
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
            self._address = parse_address(self.connection, env_vars_for(self.environment).connection)
        return self._address

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
    """The resource for `prod` or an environment, reading its three variables at run time."""
    names = env_vars_for(environment)
    return PostgresResource(
        environment=environment,
        connection=dg.EnvVar(names.connection),
        user=dg.EnvVar(names.user),
        password=dg.EnvVar(names.password),
    )


class SnapshotStore(dg.ConfigurableResource):
    """The folder that holds one snapshot per partition, and the `snapshot:` settings of replication.yaml.

    The folder comes from `SNAPSHOT_DIR` (default `/tmp`), read when a step runs, so a step
    container sees the path of its own mounted volume. `masked_columns` (schema.table.column) are
    the columns some environment masks: the preview never shows them.
    """

    include: list[str] = ["*"]
    exclude: list[str] = []
    keep: int = 7
    backfill_missing: str = "capture"
    jobs: int = 2
    preview: str = "masked"
    masked_columns: list[str] = []

    @property
    def root(self) -> Path:
        return Path(os.environ.get("SNAPSHOT_DIR") or DEFAULT_SNAPSHOT_DIR)

    def path_for(self, partition_key: str) -> Path:
        return snapshot_path(self.root, partition_key)


def build_resources(config: ReplicationConfig) -> dict:
    """prod_db, one `N_db_target` per configured environment, and the snapshot store."""
    settings = config.snapshot
    store = SnapshotStore(include=list(settings.include), exclude=list(settings.exclude), keep=settings.keep,
                          backfill_missing=settings.backfill_missing, jobs=settings.jobs, preview=settings.preview,
                          masked_columns=config.masked_columns)
    resources: dict = {f"{SOURCE}_db": postgres_resource(SOURCE), SNAPSHOT_STORE: store}
    for name in config.environment_names:
        resources[target_resource_key(name)] = postgres_resource(name)
    return resources
