"""`python -m replication.demo run|ui|stop`: the embedded default behind `make demo` and `make ui`."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from ..config import SOURCE, env_vars_for, load_config
from ..engine.pg.connection import connect, parse_address
from ..engine.snapshot.manifest import read_manifest
from ..engine.storage import SnapshotLocation, snapshot_name
from ..jobs import JOB_NAME
from .local import LocalSetup
from .summary import compare, render

REPO = Path(__file__).resolve().parents[2]
# The console shows INFO and above: progress lines, each step's result and any error. Dagster's
# DEBUG events (step started, output handled, ...) stay in the instance for `make ui`.
CONSOLE_RUN_CONFIG = "loggers:\n  console:\n    config:\n      log_level: INFO\n"


def _child_env(setup: LocalSetup, server) -> dict[str, str]:
    # Library warnings (a missing XDG_RUNTIME_DIR, a superseded CLI command) say nothing to a demo user.
    return {**os.environ, "PYTHONWARNINGS": "ignore", **setup.environment(server)}


def run(setup: LocalSetup, partition: str, scale: float) -> int:
    server = setup.start(scale=scale)
    env = _child_env(setup, server)
    print(f"Running {JOB_NAME} for partition {partition} through the Dagster instance at {setup.dagster_home}")
    run_config = setup.root / "demo-run.yaml"
    run_config.write_text(CONSOLE_RUN_CONFIG)
    started = time.monotonic()
    # The real CLI against the real instance: the run, its events and its materializations land
    # in the Postgres storage and show up in `make ui` afterwards.
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "job", "execute", "-m", "replication", "-j", JOB_NAME,
         "-c", str(run_config), "--tags", json.dumps({"dagster/partition": partition})],
        env=env,
        cwd=REPO,
    )
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        print(f"\nThe run failed (exit {result.returncode}); its log is above.", file=sys.stderr)
        return result.returncode
    snapshot = SnapshotLocation.folder(setup.snapshot_dir / snapshot_name(partition))
    manifest = read_manifest(snapshot)
    connections = {}
    try:
        for name in (SOURCE, *setup.environments):
            names = env_vars_for(name)
            connections[name] = connect(
                parse_address(env[names.connection], names.connection), env[names.user], env[names.password]
            )
        config = load_config()
        masks = {name: {table: list(cols) for table, cols in config.environments[name].rules().items()}
                 for name in setup.environments}
        subsets = {name: list(config.environments[name].subset) for name in setup.environments}
        results = compare(connections.pop(SOURCE), connections, manifest, snapshot, masks, subsets)
    finally:
        for conn in connections.values():
            conn.close()
    compression = ", ".join(sorted({t.compression for t in manifest.tables})) or "none"
    print(f"\nSnapshot {snapshot}: {len(manifest.tables)} tables, {manifest.total_rows:,} rows, "
          f"{manifest.total_bytes / 1e6:,.1f} MB of CSV stored as {manifest.stored_bytes / 1e6:,.1f} MB ({compression}); "
          f"run took {elapsed:.1f} s\n")
    print(render(results))
    bad = [r for r in results if not r.ok]
    print(f"\n{len(results) - len(bad)} of {len(results)} environment tables match production "
          "(masked tables: on every unmasked column; subset tables: part of it, every foreign key whole).")
    for name in setup.environments:
        settings = config.environments[name]
        rules = settings.mask
        kept = sum(r.rows for r in results if r.environment == name)
        total = sum(r.prod_rows for r in results if r.environment == name)
        described = (f"{len(rules)} columns masked ({', '.join(f'{k}: {v.describe()}' for k, v in rules.items())})"
                     if rules else "no column masked")
        subset = (", subset " + ", ".join(f"{k}: {v.describe()}" for k, v in settings.subset.items())
                  if settings.subset else ", the whole of production")
        print(f"  {name}: {kept:,} of production's {total:,} rows ({100 * kept / total if total else 100:.1f}%); "
              f"{described}{subset}")
    checks = _check_summary(setup, env, partition)
    if checks:
        print(checks)
    return 1 if bad else 0


def _check_summary(setup: LocalSetup, env: dict[str, str], partition: str) -> str:
    """The run's asset check results, read back from the instance as the UI shows them."""
    script = """
import dagster as dg
instance = dg.DagsterInstance.get()
run = instance.get_runs(limit=1)[0]
evaluations = [e.dagster_event.event_specific_data for e in instance.all_logs(run.run_id)
               if e.dagster_event and e.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"]
failed = [f"{r.asset_key.to_user_string()}:{r.check_name}" for r in evaluations if not r.passed]
for record in instance.all_logs(run.run_id):
    event = record.dagster_event
    if event is None or event.event_type_value != "ASSET_MATERIALIZATION":
        continue
    materialization = event.event_specific_data.materialization
    metadata = {key: value.value for key, value in materialization.metadata.items()}
    if "load_mode" not in metadata:
        continue
    name = materialization.asset_key.to_user_string()
    if metadata["load_mode"] == "swap":
        how = (f"swap: built beside the live tables with {metadata.get('load_jobs')} connections, then switched "
               f"in {metadata.get('switch_seconds', 0):.3f} s; readers saw yesterday's data until then")
    else:
        how = "in_place: one transaction; readers waited for it" + (
            f" (why not swap: {metadata['load_mode_reason']})" if metadata.get("load_mode_reason") else "")
    print(f"  {name} loaded by {how}")
    schema = metadata.get("schema") or {}
    changes = schema.get("changes") or []
    if changes:
        tables = [c.split(" ", 1)[1] for c in changes if c.startswith("table ") and not c.startswith("table attach")]
        print(f"    schema: {schema.get('mode')}: bootstrapped with {len(changes)} definitions from production's pg_dump "
              f"({len(tables)} tables created: {', '.join(tables[:4])}{', ...' if len(tables) > 4 else ''})")
    elif schema.get("mode") not in (None, "strict"):
        print(f"    schema: {schema.get('mode')}: already production's definitions, nothing to change")
print(f"Asset checks: {len(evaluations) - len(failed)} of {len(evaluations)} passed" + (f"; FAILED: {failed}" if failed else ""))
"""
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True)
    return result.stdout.rstrip()


def ui(setup: LocalSetup, host: str, port: int) -> int:
    server = setup.start()
    env = _child_env(setup, server)
    print(f"Dagster UI: http://{host}:{port}  (webserver and daemon; Ctrl-C stops them)", flush=True)
    return subprocess.call(
        [sys.executable, "-m", "dagster", "dev", "-m", "replication", "-h", host, "-p", str(port)],
        env=env, cwd=REPO,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m replication.demo")
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="start PostgreSQL, seed, run the job for one partition, compare")
    run_p.add_argument("--partition", default=datetime.now(timezone.utc).strftime("%Y-%m-%d"))
    run_p.add_argument("--scale", type=float, default=1.0, help="demo data size; 1.0 is about 240,000 rows")
    ui_p = sub.add_parser("ui", help="start PostgreSQL and `dagster dev`")
    ui_p.add_argument("--host", default="127.0.0.1")
    ui_p.add_argument("--port", type=int, default=int(os.environ.get("DAGSTER_UI_PORT", 3000)))
    sub.add_parser("stop", help="stop the embedded PostgreSQL server")
    args = parser.parse_args(argv)
    setup = LocalSetup.from_environment(REPO)
    if args.command == "run":
        return run(setup, args.partition, args.scale)
    if args.command == "ui":
        return ui(setup, args.host, args.port)
    setup.server().stop()
    print("Embedded PostgreSQL stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
