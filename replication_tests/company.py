"""A production database and one environment set up the way companies run them, beside the demo's.

Each scenario gets its own pair of databases (one on the prod server, one on the environments'
server) with its own roles, so it can give them hostile settings, many tables or huge values
without touching what the other tests compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from replication.demo.provision import Account, ensure_database, ensure_role
from replication.engine.pg.connection import connect, parse_address
from replication.engine.load import LoadReport, load_snapshot
from replication.engine.snapshot.manifest import Manifest
from replication.engine.pg.session import libpq_options
from replication.engine.capture.take import take_snapshot
from replication.engine.snapshot.verify import verify_snapshot

PARTITION = "2026-11-25"


@dataclass
class Company:
    cluster: object
    name: str
    reader: Account
    loader: Account

    def prod(self) -> psycopg.Connection:
        """Superuser, autocommit, on the production database, with the engine's pinned settings."""
        return self.cluster.source.connect(self.reader.database, options=libpq_options())

    def env(self) -> psycopg.Connection:
        """Superuser, autocommit, on the environment's database, with the engine's pinned settings."""
        return self.cluster.targets.connect(self.loader.database, options=libpq_options())

    def reader_connection(self, **kwargs) -> psycopg.Connection:
        address = parse_address(self.cluster.source.address(self.reader.database), "PROD_DB_CONNECTION")
        return connect(address, self.reader.user, self.reader.password, **kwargs)

    def loader_connection(self, **kwargs) -> psycopg.Connection:
        address = parse_address(self.cluster.targets.address(self.loader.database), "DEV_DB_CONNECTION")
        return connect(address, self.loader.user, self.loader.password, **kwargs)

    def snapshot(self, directory: Path, **kwargs) -> Manifest:
        with self.reader_connection() as conn:
            return take_snapshot(conn, directory, partition=PARTITION, **kwargs)

    def load(self, directory: Path, **kwargs) -> LoadReport:
        manifest = verify_snapshot(directory)
        kwargs.setdefault("environment", "dev")
        with self.loader_connection() as conn:
            return load_snapshot(conn, directory, manifest, **kwargs)

    def env_vars(self, environment: str = "dev") -> dict[str, str]:
        """The code location's variables for prod and one environment pointing at this pair."""
        prefix = environment.upper()
        return {
            "PROD_DB_CONNECTION": self.cluster.source.address(self.reader.database),
            "PROD_DB_USER": self.reader.user, "PROD_DB_PASSWORD": self.reader.password,
            f"{prefix}_DB_CONNECTION": self.cluster.targets.address(self.loader.database),
            f"{prefix}_DB_USER": self.loader.user, f"{prefix}_DB_PASSWORD": self.loader.password,
        }


def build_company(cluster, name: str, schema_sql: str, data_sql: str = "") -> Company:
    """Databases `{name}_prod` and `{name}_dev`: the schema in both, the data in prod.

    Production is read by `{name}_reader`, which may only SELECT; the environment's tables
    belong to `{name}_loader`, which created them.
    """
    reader = Account(f"{name}_prod", f"{name}_reader", f"{name}-reader-Secret-1")
    loader = Account(f"{name}_dev", f"{name}_loader", f"{name}-loader-Secret-2")
    with cluster.source.connect() as admin:
        ensure_role(admin, reader.user, reader.password)
        ensure_database(admin, reader.database, "postgres")
    with cluster.source.connect(reader.database) as conn:
        conn.execute(schema_sql)
        if data_sql:
            conn.execute(data_sql)
        for (schema,) in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname !~ '^pg_' AND nspname <> 'information_schema'").fetchall():
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {0} TO {1}; GRANT SELECT ON ALL TABLES IN SCHEMA {0} TO {1}; "
                                 "GRANT SELECT ON ALL SEQUENCES IN SCHEMA {0} TO {1}").format(
                sql.Identifier(schema), sql.Identifier(reader.user)))
    with cluster.targets.connect() as admin:
        ensure_role(admin, loader.user, loader.password)
        ensure_database(admin, loader.database, loader.user)
    with cluster.targets.connect(loader.database, user=loader.user, password=loader.password) as conn:
        conn.execute(schema_sql)
    return Company(cluster, name, reader, loader)
