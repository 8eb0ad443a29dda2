"""The fan-out job and its daily schedule."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

from .config import ReplicationConfig, names_for
from .partitions import daily_partitions

if TYPE_CHECKING:  # define_asset_job's return type is not exported by dagster
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

JOB_NAME = "database_replication_fanout"
SCHEDULE_NAME = f"{JOB_NAME}_schedule"


def _listed(names: list[str]) -> str:
    """dev, staging, qa -> 'Dev, Staging and QA'."""
    words = [names_for(name).display for name in names]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def build_job(config: ReplicationConfig) -> UnresolvedAssetJobDefinition:
    names = config.environment_names
    return dg.define_asset_job(
        name=JOB_NAME,
        selection=dg.AssetSelection.groups("replication"),
        partitions_def=daily_partitions,
        description=f"Daily replication from production to {_listed(names)}.",
        tags={"database": "postgres", "replication": "prod-to-nonprod", "fan-out": "-".join(names), "daily": "true",
              "dagster/max_runtime": "3600"},
    )


def build_schedule(job: UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    # Built from the partitioned job: each midnight-UTC tick requests the partition of the day it
    # runs on (the partitions end one day ahead). Dagster does not catch up missed ticks by default.
    return dg.build_schedule_from_partitioned_job(
        job,
        name=SCHEDULE_NAME,
        hour_of_day=0,
        minute_of_hour=0,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
