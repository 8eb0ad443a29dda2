"""The code location: assets, resources, job, schedule and executor, all following replication.yaml."""

import dagster as dg

import os
from pathlib import Path

from .assets import build_environment_assets, prod_snapshot
from .checks import build_checks
from .config import ReplicationConfig, load_config
from .engine.errors import ConfigurationError
from .engine.mask import policy_problems
from .engine.retention import snapshot_folders
from .resources import DEFAULT_SNAPSHOT_DIR
from .executor import select_executor
from .jobs import build_job, build_schedule
from .resources import build_resources


def check_masks_against_latest_snapshot(config: ReplicationConfig, root: Path) -> None:
    """Mask keys must name tables and columns of the newest snapshot, when one is at hand.

    Where none is (a fresh install, a webserver without the volume), each load checks its own
    snapshot before writing anything.
    """
    finished = [m for _, m in snapshot_folders(root) if m is not None]
    if not finished:
        return
    latest = max(finished, key=lambda m: m.captured_at)
    problems = [p for name, env in config.environments.items() for p in policy_problems(name, env.rules(), latest)]
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        raise ConfigurationError(f"replication.yaml masks columns the {latest.partition} snapshot does not hold:\n{listed}")


def build_definitions(config: ReplicationConfig) -> dg.Definitions:
    job = build_job(config)
    return dg.Definitions(
        assets=[prod_snapshot, *build_environment_assets(config)],
        asset_checks=build_checks(config),
        resources=build_resources(config),
        jobs=[job],
        schedules=[build_schedule(job)],
        # On Definitions, not the job: UI materializations and backfills run through the implicit
        # asset job, which takes the executor from here.
        executor=select_executor(config),
    )


# Read and validated here, so a typo in replication.yaml stops the code location from loading.
_config = load_config()
check_masks_against_latest_snapshot(_config, Path(os.environ.get("SNAPSHOT_DIR") or DEFAULT_SNAPSHOT_DIR))
defs = build_definitions(_config)
