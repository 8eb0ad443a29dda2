"""Small shared pieces for tests: connections as the replication roles, snapshots, loads."""

from __future__ import annotations

from pathlib import Path

import psycopg

from replication.config import DEFAULT_ENVIRONMENTS, env_vars_for
from replication.engine.pg.connection import connect, parse_address
from replication.engine.load import LoadReport, load_snapshot
from replication.engine.snapshot.manifest import Manifest
from replication.engine.capture.take import take_snapshot
from replication.engine.snapshot.verify import verify_snapshot
from replication.jobs import JOB_NAME

PARTITION = "2026-11-25"
JOB = JOB_NAME
ASSETS = ["prod_snapshot", *(f"{env}_db" for env in DEFAULT_ENVIRONMENTS)]


def role_connection(cluster, name: str) -> psycopg.Connection:
    """A connection as the role the code location uses for `name` (prod_reader, dev_loader, ...)."""
    account = cluster.accounts[name]
    address = parse_address(cluster.server_for(name).address(account.database), env_vars_for(name).connection)
    return connect(address, account.user, account.password)


def snapshot(cluster, directory: Path, **kwargs) -> Manifest:
    with role_connection(cluster, "prod") as conn:
        return take_snapshot(conn, directory, partition=PARTITION, **kwargs)


def load(cluster, env: str, directory: Path, **kwargs) -> LoadReport:
    """A load as the environment's role; every table takes pg_restore's order, however small, unless asked."""
    kwargs.setdefault("rebuild_min_rows", 0)
    manifest = verify_snapshot(directory)
    with role_connection(cluster, env) as conn:
        return load_snapshot(conn, directory, manifest, environment=env, **kwargs)


def stored_text(folder: Path) -> str:
    """Everything a snapshot folder holds, as text: zstd objects decompressed (the default store
    compresses), so a test can look for what must never be written there."""
    import zstandard

    parts = []
    for path in sorted(folder.iterdir()):
        data = path.read_bytes()
        if path.name.endswith(".zst"):
            data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
        parts.append(data.decode("utf-8", errors="replace"))
    return "".join(parts)
