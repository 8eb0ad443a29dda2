"""The embedded default's layout under `.local/`: server, credentials, Dagster home, snapshots."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from ..config import SOURCE, env_vars_for, load_config
from .embedded import EmbeddedPostgres
from .provision import Account, provision_source, provision_storage, provision_target

DEFAULT_PORT = 55432


def _configured_environments() -> tuple[str, ...]:
    return tuple(load_config().environment_names)


@dataclass
class LocalSetup:
    """One embedded server holding Dagster's storage, prod and every environment of replication.yaml."""

    root: Path
    port: int
    environments: tuple[str, ...] = field(default_factory=_configured_environments)

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
        """Passwords made once and kept in a 0600 file, so a second `make demo` logs in again.

        An environment added to replication.yaml later gets its password appended.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        values: dict[str, str] = {}
        if self.secrets_file.exists():
            pairs = (line.split("=", 1) for line in self.secrets_file.read_text().splitlines() if "=" in line)
            values = {k: v for k, v in pairs}
        wanted = ("SUPERUSER", "DAGSTER", "MASKING_KEY", SOURCE.upper(), *(env.upper() for env in self.environments))
        missing = {name: secrets.token_urlsafe(18) for name in wanted if name not in values}
        if missing:
            fd = os.open(self.secrets_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a") as handle:
                handle.write("".join(f"{k}={v}\n" for k, v in missing.items()))
        return {**values, **missing}

    def server(self) -> EmbeddedPostgres:
        return EmbeddedPostgres(self.root / "pg", self.port, password=self._secrets()["SUPERUSER"])

    def accounts(self) -> dict[str, Account]:
        keys = self._secrets()
        accounts = {"dagster": Account("dagster", "dagster", keys["DAGSTER"]),
                    SOURCE: Account(SOURCE, f"{SOURCE}_reader", keys[SOURCE.upper()])}
        for env in self.environments:
            accounts[env] = Account(env, f"{env}_loader", keys[env.upper()])
        return accounts

    def start(self, *, scale: float = 1.0) -> EmbeddedPostgres:
        """Start the server and create what is missing; data already there is kept."""
        server = self.server().start()
        accounts = self.accounts()
        provision_storage(server, accounts["dagster"])
        if provision_source(server, accounts[SOURCE], scale=scale):
            print(f"Seeded demo production data into {server.address(SOURCE)}")
        config = load_config()
        for env in self.environments:
            # An environment under schema: production starts as an empty database: its first
            # load creates every table from production's definitions.
            settings = config.environments.get(env)
            provision_target(server, accounts[env],
                             with_schema=settings is None or settings.schema_mode != "production")
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
            "MASKING_KEY": self._secrets()["MASKING_KEY"],
        }
        for name in (SOURCE, *self.environments):
            account = accounts[name]
            names = env_vars_for(name)
            env[names.connection] = server.address(account.database)
            env[names.user] = account.user
            env[names.password] = account.password
        return env
