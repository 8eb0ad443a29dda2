"""Every environment's freshness check, from `alerts.stale_after`, and the sensor that evaluates it.

Dagster's own: `build_last_update_freshness_checks` and `build_sensor_for_freshness_checks`. The
environment's age is the age of the production it holds: each load reports the snapshot's capture
time as `dagster/last_updated_timestamp`, so restoring last week's snapshot today is stale, not fresh.

One check per environment, not one for all: the checks run in the replication run after their
asset, and a check shared by Dev and QA would be skipped with Dev's failed load and leave QA's
result behind. The sensor re-evaluates a passing check once it could have gone stale; a failed one
waits for the next load, whose run evaluates it again.
"""

from __future__ import annotations

import os
import warnings
from datetime import timedelta

import dagster as dg

from ..config import ReplicationConfig, names_for

FRESHNESS_CHECK = "freshness_check"
FRESHNESS_SENSOR = "environment_freshness_sensor"
# How often the freshness and alert sensors look, in seconds; the tests shorten it.
SENSOR_INTERVAL_SECONDS = int(os.environ.get("REPLICATION_SENSOR_INTERVAL_SECONDS", "30"))


def freshness_check_key(environment: str) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(dg.AssetKey(names_for(environment).asset), FRESHNESS_CHECK)


def build_freshness_checks(config: ReplicationConfig) -> list[dg.AssetChecksDefinition]:
    delta = timedelta(seconds=config.alerts.stale_after)
    with warnings.catch_warnings():  # superseded by FreshnessPolicy, which the issue did not choose
        warnings.simplefilter("ignore")
        return [check for name in config.environment_names
                for check in dg.build_last_update_freshness_checks(assets=[names_for(name).asset], lower_bound_delta=delta)]


def build_freshness_sensor(checks: list[dg.AssetChecksDefinition]) -> dg.SensorDefinition:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dg.build_sensor_for_freshness_checks(
            freshness_checks=checks, name=FRESHNESS_SENSOR, minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
            default_status=dg.DefaultSensorStatus.RUNNING)
