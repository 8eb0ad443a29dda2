"""Dagster resources: per-environment PostgreSQL credentials and the snapshot store."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psycopg
from pydantic import PrivateAttr

from .config import SOURCE, ReplicationConfig, S3Settings, SnapshotSettings, names_for
from .engine.pg.connection import Address, connect, parse_address
from .engine.errors import SnapshotKeyError
from .engine.storage.codec import IdentityWrong
from .engine.storage import IDENTITY_VARIABLE, Encoding, FolderStore, ObjectStore, SnapshotLocation, \
    parse_identities, snapshot_name
from .engine.storage.s3 import S3Store, is_s3_url

DEFAULT_SNAPSHOT_DIR = "/tmp"
SNAPSHOT_STORE = "snapshot_store"
MASKING_KEY = "masking_key"


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
            self._address = parse_address(self.connection, names_for(self.environment).variables.connection)
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
    names = names_for(environment).variables
    return PostgresResource(
        environment=environment,
        connection=dg.EnvVar(names.connection),
        user=dg.EnvVar(names.user),
        password=dg.EnvVar(names.password),
    )


class SnapshotStore(dg.ConfigurableResource):
    """Where snapshots live and how they are stored: the `snapshot:` settings of replication.yaml.

    `store` is a folder or `s3://bucket/prefix`; unset, the folder is `SNAPSHOT_DIR` (default `/tmp`),
    read when a step runs, so a step container sees the path of its own mounted volume. The age
    identity that decrypts snapshots is read from `SNAPSHOT_AGE_IDENTITY` only by the steps that
    decode them. `masked_columns` (schema.table.column) are the columns some environment masks:
    the preview never shows them. Built from `SnapshotSettings` by `from_settings`.
    """

    include: list[str]
    exclude: list[str]
    keep: int
    backfill_missing: str
    jobs: int
    split_larger_than: int | None = None
    preview: str
    store: str | None
    endpoint_url: str | None
    region: str | None
    checksums: str
    compression: str
    compression_level: int
    encrypt_to: list[str]
    masked_columns: list[str] = []

    _objects: ObjectStore | None = PrivateAttr(default=None)

    @classmethod
    def from_settings(cls, settings: SnapshotSettings, masked_columns: list[str] | tuple[str, ...] = ()
                      ) -> "SnapshotStore":
        s3 = settings.s3 or S3Settings()
        fields = settings.model_dump(exclude={"s3"})
        return cls(**fields, endpoint_url=s3.endpoint_url, region=s3.region, checksums=s3.checksums,
                   masked_columns=list(masked_columns))

    @property
    def root(self) -> Path:
        """The folder of a folder store."""
        return Path(self.store or os.environ.get("SNAPSHOT_DIR") or DEFAULT_SNAPSHOT_DIR)

    @property
    def objects(self) -> ObjectStore:
        if self._objects is None:
            self._objects = (S3Store(self.store, endpoint_url=self.endpoint_url, region=self.region,
                                     checksums=self.checksums)
                             if is_s3_url(self.store) else FolderStore(self.root))
        return self._objects

    @property
    def encoding(self) -> Encoding:
        return Encoding(self.compression, self.compression_level, tuple(self.encrypt_to))

    def location(self, partition_key: str, *, decrypt: bool = False) -> SnapshotLocation:
        """The partition's snapshot; `decrypt` reads the identity, for the steps that decode it."""
        try:
            identities = parse_identities(os.environ.get(IDENTITY_VARIABLE)) if decrypt else []
        except IdentityWrong as exc:
            raise SnapshotKeyError(f"{exc} Nothing was read or written: set it to the identity whose public key "
                                   "is in snapshot.encrypt_to.") from None
        return SnapshotLocation(self.objects, snapshot_name(partition_key), self.encoding, identities)

    def describe(self) -> str:
        return self.objects.location()


class MaskingKeyResource(dg.ConfigurableResource):
    """The secret that keyed masks (hash, email, name, phone) and subsets hash with.

    Read from its variable when a step runs, never from replication.yaml; unset, keyed masks are
    refused and subsets use their documented default key.
    """

    variable: str = "MASKING_KEY"

    def key(self) -> str | None:
        return os.environ.get(self.variable) or None


def build_resources(config: ReplicationConfig) -> dict:
    """prod_db, one `N_db_target` per configured environment, and the snapshot store."""
    store = SnapshotStore.from_settings(config.snapshot, config.masked_columns)
    resources: dict = {names_for(SOURCE).resource: postgres_resource(SOURCE), SNAPSHOT_STORE: store,
                       MASKING_KEY: MaskingKeyResource()}
    for name in config.environment_names:
        resources[names_for(name).resource] = postgres_resource(name)
    return resources
