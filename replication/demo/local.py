"""The embedded default's layout under `.local/`: server, credentials, Dagster home, snapshots."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from .embedded import EmbeddedPostgres
from .provision import Account, provision_source, provision_storage, provision_target

ENVIRONMENTS = ("dev", "staging", "qa")
DEFAULT_PORT = 55432


@dataclass
class LocalSetup:
    root: Path
    port: int

    @classmethod
    def from_environment(cls, repo: Path) -> "LocalSetup":
        root = Path(os.environ.get("REPLICATION_LOCAL_DIR", repo / ".local")).resolve()
        return cls(root, int(os.environ.get("DEMO_PG_PORT", DEFAULT_PORT)))

    @property
    def secrets_file(self) -> Path:
        return self.root / "credentials.env"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def snapshot_dir(self) -> Path:
        return self.root / "snapshots"

    def _secrets(self) -> dict[str, str]:
        """Passwords made once and kept in a 0600 file, so a second `make demo` logs in again."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self.secrets_file.exists():
            pairs = (line.split("=", 1) for line in self.secrets_file.read_text().splitlines() if "=" in line)
            return {k: v for k, v in pairs}
        values = {name: secrets.token_urlsafe(18) for name in ("SUPERUSER", "DAGSTER", "PROD", "DEV", "STAGING", "QA")}
        fd = os.open(self.secrets_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("".join(f"{k}={v}\n" for k, v in values.items()))
        return values

    def server(self) -> EmbeddedPostgres:
        return EmbeddedPostgres(self.root / "pg", self.port, password=self._secrets()["SUPERUSER"])

    def accounts(self) -> dict[str, Account]:
        keys = self._secrets()
        accounts = {"dagster": Account("dagster", "dagster", keys["DAGSTER"]), "prod": Account("prod", "prod_reader", keys["PROD"])}
        for env in ENVIRONMENTS:
            accounts[env] = Account(env, f"{env}_loader", keys[env.upper()])
        return accounts

    def start(self, *, scale: float = 1.0) -> EmbeddedPostgres:
        """Start the server and create what is missing; data already there is kept."""
        server = self.server().start()
        accounts = self.accounts()
        provision_storage(server, accounts["dagster"])
        if provision_source(server, accounts["prod"], scale=scale):
            print(f"Seeded demo production data into {server.address('prod')}")
        for env in ENVIRONMENTS:
            provision_target(server, accounts[env])
        self._write_dagster_home()
        return server

    def _write_dagster_home(self) -> None:
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        repo_yaml = Path(__file__).resolve().parents[2] / "dagster.yaml"
        (self.dagster_home / "dagster.yaml").write_text(repo_yaml.read_text())

    def environment(self, server: EmbeddedPostgres) -> dict[str, str]:
        """The variables the code location reads, for a child process; never printed."""
        accounts = self.accounts()
        env = {
            "DAGSTER_HOME": str(self.dagster_home),
            "DAGSTER_PG_HOST": server.host,
            "DAGSTER_PG_PORT": str(server.port),
            "DAGSTER_PG_DB": accounts["dagster"].database,
            "DAGSTER_PG_USERNAME": accounts["dagster"].user,
            "DAGSTER_PG_PASSWORD": accounts["dagster"].password,
            "SNAPSHOT_DIR": str(self.snapshot_dir),
        }
        for name in ("prod", *ENVIRONMENTS):
            account = accounts[name]
            prefix = name.upper()
            env[f"{prefix}_DB_CONNECTION"] = server.address(account.database)
            env[f"{prefix}_DB_USER"] = account.user
            env[f"{prefix}_DB_PASSWORD"] = account.password
        return env
