"""Operators hear of a failed run, a failed blocking check or a stale environment without opening
the UI: Slack, a webhook and mail, as `alerts:` in replication.yaml asks (docs/alerts.md).

Failures go through Dagster's run-failure sensors (`dg.run_failure_sensor`, what dagster-slack's
`make_slack_on_run_failure_sensor` and Dagster's `make_email_on_run_failure_sensor` are built on):
one per channel, so one channel's outage never repeats a message on another. Those two helpers
fix Slack's address to slack.com and mail to a login over TLS; the senders here take Slack's API
address as a setting (GovSlack, a test server) and a relay without login.

Sensors run in the code location's process (the daemon asks it), on every run of the code
location: scheduled, launched from the UI and backfills. A run started in-process by
`dagster job execute` (as `make demo` does) is not queued through the daemon and is not seen.
"""

from __future__ import annotations

import dagster as dg

from ..config import ReplicationConfig
from .channels import SENDERS
from .failure import StepOwners, failure_alert
from .freshness import SENSOR_INTERVAL_SECONDS, build_freshness_checks, build_freshness_sensor
from .stale import build_stale_sensor

__all__ = ["build_alert_sensors", "build_freshness_checks", "build_freshness_sensor"]


def _failure_sensor(channel: str, config: ReplicationConfig, owners: StepOwners) -> dg.SensorDefinition:
    send = SENDERS[channel]

    @dg.run_failure_sensor(name=f"{channel}_on_run_failure", minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
                           default_status=dg.DefaultSensorStatus.RUNNING,
                           description=f"Sends {channel} an alert for every failed run of this code location: "
                                       "the environments, partition, steps and first error line, and the run's link.")
    def on_failure(context: dg.RunFailureSensorContext):
        alert = failure_alert(context, owners, config.alerts.ui_url)
        send(config.alerts, alert)
        context.log.info(f"sent to {channel}: {alert.title}")

    return on_failure


def build_alert_sensors(config: ReplicationConfig, freshness: list[dg.AssetChecksDefinition]
                        ) -> list[dg.SensorDefinition]:
    """One run-failure and one stale sensor per channel; `freshness` are the environments' freshness
    checks (build_freshness_checks), whose ops the messages name by environment."""
    owners = StepOwners.of(config, freshness)
    sensors = []
    for channel in config.alerts.channels:
        sensors += [_failure_sensor(channel, config, owners), build_stale_sensor(channel, config, SENDERS[channel])]
    return sensors
