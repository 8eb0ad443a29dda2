"""The code location: assets, checks, resources, job, schedule, sensors and executor, all following replication.yaml."""

import dagster as dg

from .alerts import build_alert_sensors, build_freshness_checks, build_freshness_sensor
from .assets import build_environment_assets, prod_snapshot
from .checks import build_checks
from .config import ReplicationConfig, load_config
from .executors import select_executor
from .jobs import build_job, build_schedule
from .resources import build_resources


def build_definitions(config: ReplicationConfig) -> dg.Definitions:
    job = build_job(config)
    freshness = build_freshness_checks(config)
    return dg.Definitions(
        assets=[prod_snapshot, *build_environment_assets(config)],
        asset_checks=[*build_checks(config), *freshness],
        resources=build_resources(config),
        jobs=[job],
        schedules=[build_schedule(job)],
        sensors=[build_freshness_sensor(freshness), *build_alert_sensors(config, freshness)],
        # On Definitions, not the job: UI materializations and backfills run through the implicit
        # asset job, which takes the executor from here.
        executor=select_executor(config),
    )


# Read and validated here, so a typo in replication.yaml stops the code location from loading.
# Nothing else is read: no snapshot, no database. Whether the masks still fit production's schema
# is each environment's own step's business (and an asset check's), so a migration on production
# fails the environments it concerns, not the code location with the schedule and all the others.
defs = build_definitions(load_config())
