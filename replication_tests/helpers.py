"""Small shared pieces for tests: connections as the replication roles, snapshots, loads."""

from __future__ import annotations

from pathlib import Path

import psycopg

from replication.engine.connection import connect, parse_address
from replication.engine.load import LoadReport, load_snapshot
from replication.engine.manifest import Manifest
from replication.engine.snapshot import take_snapshot
from replication.engine.verify import verify_snapshot


def role_connection(cluster, name: str) -> psycopg.Connection:
    """A connection as the role the code location uses for `name` (prod_reader, dev_loader, ...)."""
    account = cluster.accounts[name]
    address = parse_address(cluster.server_for(name).address(account.database), f"{name.upper()}_DB_CONNECTION")
    return connect(address, account.user, account.password)


def snapshot(cluster, directory: Path, **kwargs) -> Manifest:
    with role_connection(cluster, "prod") as conn:
        return take_snapshot(conn, directory, partition="2026-11-25", **kwargs)


def load(cluster, env: str, directory: Path, **kwargs) -> LoadReport:
    manifest = verify_snapshot(directory)
    with role_connection(cluster, env) as conn:
        return load_snapshot(conn, directory, manifest, environment=env, **kwargs)
