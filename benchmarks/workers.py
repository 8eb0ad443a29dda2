"""What every benchmark phase shares: worker processes that run one engine step each, and their peak memory.

Each worker is a fresh Python process importing the engine only, as a step container would run
it, so its peak resident memory (VmHWM) is the step's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PARTITION = "2026-11-25"

# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child would report the
# benchmark's own size; VmHWM belongs to the process image that did the work.
REPORT_PEAK = """
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print("VmHWM_KIB=" + line.split()[1])
"""
# One worker process per step, as the executor runs them: it imports the engine only.
# A snapshot is a folder path, or a JSON store spec: {"store": folder or s3://..., "endpoint_url",
# "compression", "recipients"} (the age identity comes from SNAPSHOT_AGE_IDENTITY, as in a step).
LOCATION = """
import json, os
from pathlib import Path
from replication.engine.storage import Encoding, FolderStore, SnapshotLocation, parse_identities, snapshot_name
from replication.engine.storage.s3 import S3Store, is_s3_url
def location(spec):
    if not spec.startswith("{"):
        return SnapshotLocation.folder(Path(spec))
    spec = json.loads(spec)
    store = (S3Store(spec["store"], endpoint_url=spec.get("endpoint_url")) if is_s3_url(spec["store"])
             else FolderStore(spec["store"]))
    return SnapshotLocation(store, snapshot_name("%s"), Encoding(spec.get("compression", "none"), 3,
                            tuple(spec.get("recipients", ()))), parse_identities(os.environ.get("SNAPSHOT_AGE_IDENTITY")))
""" % PARTITION
SNAPSHOT_WORKER = LOCATION + """
import sys
from replication.engine.pg.connection import connect, parse_address
from replication.engine.capture.take import take_snapshot
address, user, password, folder, jobs = sys.argv[1:6]
split = int(sys.argv[6]) if len(sys.argv) > 6 and sys.argv[6] else None
def prod():
    return connect(parse_address(address, "PROD_DB_CONNECTION"), user, password)
with prod() as conn:
    take_snapshot(conn, location(folder), partition="%s", connect=prod, jobs=int(jobs), split_bytes=split)
""" % PARTITION + REPORT_PEAK
LOAD_WORKER = LOCATION + """
import json, os, sys
from replication.engine.pg.connection import connect, parse_address
from replication.engine.load import load_snapshot
from replication.engine.privacy.mask import MaskRule
from replication.engine.subset.plan import SubsetRule
from replication.engine.snapshot.verify import verify_snapshot
import time
started = time.monotonic()
env, address, user, password, folder = sys.argv[1:6]
masks = {t: {c: MaskRule(*r) for c, r in cols.items()} for t, cols in json.loads(sys.argv[6]).items()}
subset = {t: SubsetRule(**rule) for t, rule in json.loads(sys.argv[7]).items()}
snapshot = location(folder)
manifest = verify_snapshot(snapshot)  # as the asset does: every sha256 before connecting
with connect(parse_address(address, env.upper() + "_DB_CONNECTION"), user, password) as conn:
    load_snapshot(conn, snapshot, manifest, environment=env, masks=masks, masking_key=os.environ.get("MASKING_KEY"),
                  subset=subset)
print("SECONDS=%.3f" % (time.monotonic() - started))
""" + REPORT_PEAK


# A swap of one environment with `jobs` connections (load: swap), as the asset runs it.
SWAP_WORKER = LOCATION + """
import sys, time
from replication.engine.pg.connection import connect, parse_address
from replication.engine.load.swap import swap_snapshot
from replication.engine.snapshot.verify import verify_snapshot
started = time.monotonic()
env, address, user, password, folder, jobs = sys.argv[1:7]
snapshot = location(folder)
manifest = verify_snapshot(snapshot)
def environment():
    return connect(parse_address(address, env.upper() + "_DB_CONNECTION"), user, password)
with environment() as conn:
    report = swap_snapshot(environment, conn, snapshot, manifest, environment=env, jobs=int(jobs))
print("SECONDS=%.3f" % (time.monotonic() - started))
print("SWITCH_SECONDS=%.3f" % report.switch_seconds)
""" + REPORT_PEAK


class Phase:
    """A benchmark phase with databases of its own: `{prefix}_prod` and one per environment, same roles."""

    prefix = ""

    def __init__(self, server, accounts: dict, environments: tuple[str, ...], root: Path, jobs: int):
        self.server = server
        self.environments = environments
        self.root = root
        self.jobs = jobs
        self.reader = accounts["prod"]
        self.loaders = {env: accounts[env] for env in environments}
        self.folder = root / f"{self.prefix}_snapshot" / "prod_snapshot_20261125"

    def database(self, name: str) -> str:
        return f"{self.prefix}_{name}"

    def create(self, schema_sql: str, data_sql: str) -> None:
        """The schema in every database, created as its owner would; the data in prod, readable by prod's role."""
        from psycopg import sql

        from replication.demo.provision import ensure_database

        with self.server.connect() as admin:
            ensure_database(admin, self.database("prod"), "postgres")
            for env, account in self.loaders.items():
                ensure_database(admin, self.database(env), account.user)
        with self.server.connect(self.database("prod")) as conn:
            conn.execute(schema_sql)
            conn.execute(data_sql)
            conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(
                sql.Identifier(self.reader.user)))
        for env, account in self.loaders.items():
            with self.server.connect(self.database(env), user=account.user, password=account.password) as conn:
                conn.execute(schema_sql)


def snapshot_command(address: str, user: str, password: str, folder: Path | str, jobs: int,
                     split_bytes: int | None = None) -> list[str]:
    return [sys.executable, "-c", SNAPSHOT_WORKER, address, user, password, str(folder), str(jobs),
            str(split_bytes or "")]


def swap_command(env: str, address: str, user: str, password: str, folder: Path | str, jobs: int) -> list[str]:
    return [sys.executable, "-c", SWAP_WORKER, env, address, user, password, str(folder), str(jobs)]


def load_command(env: str, address: str, user: str, password: str, folder: Path | str, masks: dict | None = None,
                 subset: dict | None = None) -> list[str]:
    rules = {table: {column: [rule.strategy, rule.value] for column, rule in columns.items()}
             for table, columns in (masks or {}).items()}
    roots = {table: {"percent": rule.percent, "where": rule.where} for table, rule in (subset or {}).items()}
    return [sys.executable, "-c", LOAD_WORKER, env, address, user, password, str(folder), json.dumps(rules),
            json.dumps(roots)]


def run_workers(commands: list[tuple]) -> tuple[float, int]:
    """Start every (label, command[, env]) at once; returns wall seconds and the largest peak RSS (KiB)."""
    seconds, peak, _ = run_workers_timed(commands)
    return seconds, peak


def run_workers_timed(commands: list[tuple]) -> tuple[float, int, dict[str, float]]:
    """run_workers, and each load worker's own seconds (from start to COMMIT and sequences) by label."""
    started = time.monotonic()
    procs = [(label, subprocess.Popen(cmd, env={**os.environ, **(extra[0] if extra else {})}, cwd=REPO,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
             for label, cmd, *extra in commands]
    peak, own = 0, {}
    for label, proc in procs:
        output = proc.communicate()[0].decode(errors="replace")
        if proc.returncode != 0:
            raise SystemExit(f"{label} failed (exit {proc.returncode}):\n{output[-3000:]}")
        peak = max([peak, *(int(line.split("=")[1]) for line in output.splitlines() if line.startswith("VmHWM_KIB="))])
        own.update({label: float(line.split("=")[1]) for line in output.splitlines() if line.startswith("SECONDS=")})
    return time.monotonic() - started, peak, own


def run_dagster(env: dict[str, str], home: Path, partition: str = PARTITION) -> tuple[float, int]:
    """The partition end to end through `dagster job execute`; returns seconds and the largest step's peak RSS (KiB)."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster-run.yaml"
    config.write_text("ops:\n  prod_snapshot:\n    config:\n      refresh: true\n"
                      "loggers:\n  console:\n    config:\n      log_level: WARNING\n")
    env = {**os.environ, **env, "DAGSTER_HOME": str(home)}
    env.pop("REPLICATION_CONFIG", None)
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "dagster", "job", "execute", "-m", "replication",
                             "-j", "database_replication_fanout", "-c", str(config),
                             "--tags", json.dumps({"dagster/partition": partition})],
                            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sampler = StepRssSampler(proc.pid)
    sampler.start()
    output = proc.communicate()[0].decode(errors="replace")
    sampler.stop()
    if proc.returncode != 0:
        raise SystemExit(f"dagster run failed:\n{output[-3000:]}")
    return time.monotonic() - started, sampler.peak_kib


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
