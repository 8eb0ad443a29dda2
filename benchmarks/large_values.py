"""`make bench`'s large-values phase: peak memory of a snapshot and a load of rows holding 100 MiB values.

A table with `count` values of `mib` MiB, a 200 KiB text in a masked column and ordinary rows.
The values are random bytes (printed as hex in the CSV: twice that per row), or, in the
compressible variant, repeated text, as the JSON logs many applications keep: zstd stores a
100 MiB value in a few kilobytes, and a decoder that hands back whatever a chunk expands to would
hold all of it at once. The engine's snapshot and its masked load each run in a worker process
of their own (random values in a plain folder, compressible ones under zstd, the default); then
the whole partition runs through `dagster job execute` with the shipped defaults (zstd), whose
steps' peak resident memory is what a 512 MiB container must hold.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from replication.demo.embedded import EmbeddedPostgres
from replication.demo.provision import Account
from replication.engine.privacy.mask import MaskRule

from .workers import Phase, load_command, run_dagster, run_workers, snapshot_command

SCHEMA_SQL = "CREATE TABLE public.documents (id integer PRIMARY KEY, body bytea, note text, email text, log text);"
DATA_SQL = """
INSERT INTO public.documents SELECT g, decode(md5(g::text), 'hex'), 'note ' || g, 'user' || g || '@example.org'
FROM generate_series(1, 1000) g;
INSERT INTO public.documents SELECT 100000 + n,
       (SELECT string_agg(sha256(int8send(n * 100000000 + g)), '') FROM generate_series(1, %(chunks)s) g),
       'document ' || n, 'owner' || n || '@example.org'
FROM generate_series(1, %(count)s) n;
INSERT INTO public.documents VALUES (200000, NULL, repeat('Long, "quoted" note; ', 10000), 'long@example.org');
"""
LOG_LINE = 'Compressible, "quoted" log line; '
COMPRESSIBLE_DATA_SQL = """
INSERT INTO public.documents SELECT g, decode(md5(g::text), 'hex'), 'note ' || g, 'user' || g || '@example.org'
FROM generate_series(1, 1000) g;
INSERT INTO public.documents SELECT 100000 + n, NULL, 'document ' || n, 'owner' || n || '@example.org',
       repeat(%(line)s, %(repeats)s)
FROM generate_series(1, %(count)s) n;
INSERT INTO public.documents VALUES (200000, NULL, repeat('Long, "quoted" note; ', 10000), 'long@example.org');
"""
MASKS = {"public.documents": {"note": MaskRule("redact"), "email": MaskRule("email")}}


class LargeValues(Phase):
    prefix = "large"

    def __init__(self, server: EmbeddedPostgres, accounts: dict[str, Account], environments: tuple[str, ...],
                 root: Path, count: int, mib: int, jobs: int, compressible: bool = False):
        self.prefix = "squeezed" if compressible else "large"
        super().__init__(server, accounts, environments, root, jobs)
        self.count = count
        self.mib = mib
        self.compressible = compressible

    @property
    def kind(self) -> str:
        return "compressible" if self.compressible else "random"

    def setup(self) -> None:
        if self.compressible:
            repeats = self.mib * (1 << 20) // len(LOG_LINE)
            self.create(SCHEMA_SQL, COMPRESSIBLE_DATA_SQL % {"line": f"'{LOG_LINE}'", "repeats": repeats,
                                                             "count": self.count})
        else:
            self.create(SCHEMA_SQL, DATA_SQL % {"chunks": self.mib * (1 << 20) // 32, "count": self.count})

    def engine(self) -> tuple[int, int]:
        """Peak RSS (KiB) of a snapshot worker and of a masked load worker."""
        shutil.rmtree(self.folder, ignore_errors=True)
        snapshot = (json.dumps({"store": str(self.folder.parent), "compression": "zstd"}) if self.compressible
                    else self.folder)
        _, snapshot_peak = run_workers([("snapshot", snapshot_command(
            self.server.address(self.database("prod")), self.reader.user, self.reader.password, snapshot, self.jobs))])
        env, account = next(iter(self.loaders.items()))
        _, load_peak = run_workers([(env, load_command(env, self.server.address(self.database(env)), account.user,
                                                       account.password, snapshot, MASKS),
                                     {"MASKING_KEY": "bench-key"})])
        return snapshot_peak, load_peak

    def dagster(self) -> int:
        """Peak RSS (KiB) of the largest Dagster step of the whole partition, checks included."""
        first = self.environments[0]
        config = {"environments": {env: ({"mask": {f"public.documents.{column}": rule.strategy
                                                    for column, rule in MASKS["public.documents"].items()}}
                                         if env == first else {}) for env in self.environments}}
        env = {"REPLICATION_CONFIG_YAML": yaml.safe_dump(config), "MASKING_KEY": "bench-key",
               "SNAPSHOT_DIR": str(self.root / f"{self.prefix}_dagster_snapshots"),
               "PROD_DB_CONNECTION": self.server.address(self.database("prod")),
               "PROD_DB_USER": self.reader.user, "PROD_DB_PASSWORD": self.reader.password}
        for name, account in self.loaders.items():
            prefix = name.upper()
            env.update({f"{prefix}_DB_CONNECTION": self.server.address(self.database(name)),
                        f"{prefix}_DB_USER": account.user, f"{prefix}_DB_PASSWORD": account.password})
        _, peak = run_dagster(env, self.root / f"{self.prefix}_dagster_home")
        return peak
