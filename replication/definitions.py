"""The code location: assets, resources, job, schedule and executor."""

import dagster as dg

from .assets import ENVIRONMENT_ASSETS, prod_snapshot
from .executor import select_executor
from .jobs import database_replication_fanout, database_replication_fanout_schedule
from .resources import SnapshotStore, postgres_resource


def build_resources() -> dict:
    return {
        "prod_db": postgres_resource("PROD"),
        "dev_db_target": postgres_resource("DEV"),
        "staging_db_target": postgres_resource("STAGING"),
        "qa_db_target": postgres_resource("QA"),
        "snapshot_store": SnapshotStore(),
    }


defs = dg.Definitions(
    assets=[prod_snapshot, *ENVIRONMENT_ASSETS],
    resources=build_resources(),
    jobs=[database_replication_fanout],
    schedules=[database_replication_fanout_schedule],
    # On Definitions, not the job: UI materializations and backfills run through the implicit
    # asset job, which takes the executor from here.
    executor=select_executor(),
)
