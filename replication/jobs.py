"""The fan-out job and its daily schedule."""

import dagster as dg

from .partitions import daily_partitions

database_replication_fanout = dg.define_asset_job(
    name="database_replication_fanout",
    selection=dg.AssetSelection.groups("replication"),
    partitions_def=daily_partitions,
    description="Daily replication from production to Dev, Staging and QA.",
    tags={"database": "postgres", "replication": "prod-to-nonprod", "fan-out": "dev-staging-qa", "daily": "true",
          "dagster/max_runtime": "3600"},
)

# Built from the partitioned job: each midnight-UTC tick requests the partition of the day it
# runs on (the partitions end one day ahead). Dagster does not catch up missed ticks by default.
database_replication_fanout_schedule = dg.build_schedule_from_partitioned_job(
    database_replication_fanout,
    name="database_replication_fanout_schedule",
    hour_of_day=0,
    minute_of_hour=0,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
