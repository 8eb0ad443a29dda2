"""`make bench`'s large-values phase: peak memory of a snapshot and a load of rows holding 100 MiB values.

A table with `count` values of `mib` MiB of random bytes (printed as hex in the CSV: twice that
per row), a 200 KiB text in a masked column and ordinary rows. The engine's snapshot and its
masked load each run in a worker process of their own; then the whole partition runs through
`dagster job execute`, whose steps' peak resident memory is what a 512 MiB container must hold.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from replication.demo.embedded import EmbeddedPostgres
from replication.demo.provision import Account
from replication.engine.mask import MaskRule

from .workers import Phase, load_command, run_dagster, run_workers, snapshot_command

SCHEMA_SQL = "CREATE TABLE public.documents (id integer PRIMARY KEY, body bytea, note text, email text);"
DATA_SQL = """
INSERT INTO public.documents SELECT g, decode(md5(g::text), 'hex'), 'note ' || g, 'user' || g || '@example.org'
FROM generate_series(1, 1000) g;
INSERT INTO public.documents SELECT 100000 + n,
       (SELECT string_agg(sha256(int8send(n * 100000000 + g)), '') FROM generate_series(1, %(chunks)s) g),
       'document ' || n, 'owner' || n || '@example.org'
FROM generate_series(1, %(count)s) n;
INSERT INTO public.documents VALUES (200000, NULL, repeat('Long, "quoted" note; ', 10000), 'long@example.org');
"""
MASKS = {"public.documents": {"note": MaskRule("redact"), "email": MaskRule("email")}}


class LargeValues(Phase):
    prefix = "large"

    def __init__(self, server: EmbeddedPostgres, accounts: dict[str, Account], environments: tuple[str, ...],
                 root: Path, count: int, mib: int, jobs: int):
        super().__init__(server, accounts, environments, root, jobs)
        self.count = count
        self.mib = mib

    def setup(self) -> None:
        self.create(SCHEMA_SQL, DATA_SQL % {"chunks": self.mib * (1 << 20) // 32, "count": self.count})

    def engine(self) -> tuple[int, int]:
        """Peak RSS (KiB) of a snapshot worker and of a masked load worker."""
        shutil.rmtree(self.folder, ignore_errors=True)
        _, snapshot_peak = run_workers([("snapshot", snapshot_command(
            self.server.address(self.database("prod")), self.reader.user, self.reader.password, self.folder, self.jobs))])
        env, account = next(iter(self.loaders.items()))
        _, load_peak = run_workers([(env, load_command(env, self.server.address(self.database(env)), account.user,
                                                       account.password, self.folder, MASKS),
                                     {"MASKING_KEY": "bench-key"})])
        return snapshot_peak, load_peak

    def dagster(self) -> int:
        """Peak RSS (KiB) of the largest Dagster step of the whole partition, checks included."""
        first = self.environments[0]
        config = {"environments": {env: ({"mask": {f"public.documents.{column}": rule.strategy
                                                    for column, rule in MASKS["public.documents"].items()}}
                                         if env == first else {}) for env in self.environments}}
        env = {"REPLICATION_CONFIG_YAML": yaml.safe_dump(config), "MASKING_KEY": "bench-key",
               "SNAPSHOT_DIR": str(self.root / "large_dagster_snapshots"),
               "PROD_DB_CONNECTION": self.server.address(self.database("prod")),
               "PROD_DB_USER": self.reader.user, "PROD_DB_PASSWORD": self.reader.password}
        for name, account in self.loaders.items():
            prefix = name.upper()
            env.update({f"{prefix}_DB_CONNECTION": self.server.address(self.database(name)),
                        f"{prefix}_DB_USER": account.user, f"{prefix}_DB_PASSWORD": account.password})
        _, peak = run_dagster(env, self.root / "large_dagster_home")
        return peak
