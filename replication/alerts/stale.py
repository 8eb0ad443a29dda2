"""Stale environments as alerts: once when an environment's freshness check fails, again only
after a load has made it fresh and it has gone stale anew.

The cursor holds the environments already reported stale. Dagster keeps a sensor's cursor only
when its tick succeeds, so a message that could not be sent is tried again on the next tick, and
one that was sent is never sent twice. An environment never loaded has no age: it is not reported
(a scheduled run that cannot load it is, as a failed run).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import dagster as dg

from ..config import ReplicationConfig, names_for
from ..metadata import LAST_UPDATED
from .freshness import FRESHNESS_CHECK, SENSOR_INTERVAL_SECONDS, freshness_check_key
from .message import Alert, Problem, scrub_line


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def stale_problems(instance: dg.DagsterInstance, config: ReplicationConfig, reported: set[str]
                   ) -> tuple[list[tuple[Problem, dict]], set[str]]:
    """(each newly stale environment's problem and last load, every environment stale now)."""
    keys = {name: freshness_check_key(name) for name in config.environment_names}
    summaries = instance.event_log_storage.get_asset_check_summary_records(list(keys.values()))
    newly, stale = [], set()
    for name, key in keys.items():
        record = summaries[key].last_completed_check_execution_record
        evaluation = record.event.asset_check_evaluation if record and record.event else None
        if evaluation is None:
            # Planned but never evaluated: the run that should have loaded it failed first. That
            # says nothing about freshness (the failed run has its own alert): what was, stays.
            if name in reported:
                stale.add(name)
            continue
        if evaluation.passed or LAST_UPDATED not in evaluation.metadata:
            continue
        stale.add(name)
        if name in reported:
            continue
        updated = evaluation.metadata[LAST_UPDATED].value
        latest = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key.asset_key), limit=1).records
        last = {"partition": latest[0].partition_key, "run_id": latest[0].run_id} if latest else {}
        names = names_for(name)
        problem = Problem(names.display, FRESHNESS_CHECK,
                          scrub_line(f"holds production as of {_when(updated)}, {_hours(time.time() - updated)} ago "
                                     f"(stale after {_hours(config.alerts.stale_after)}); its last load: "
                                     f"partition {last.get('partition', 'unknown')}"))
        newly.append((problem, last))
    return newly, stale


def stale_alert(newly: list[tuple[Problem, dict]], ui_url: str) -> Alert:
    runs = [last["run_id"] for _, last in newly if last.get("run_id")]
    partitions = sorted({last["partition"] for _, last in newly if last.get("partition")})
    run_id = runs[0] if len(set(runs)) == 1 else None
    return Alert(
        kind="stale",
        partition=", ".join(partitions) or None,
        problems=tuple(problem for problem, _ in newly),
        run_id=run_id,
        run_url=f"{ui_url}/runs/{run_id}" if run_id else f"{ui_url}/asset-groups/replication",
        summary="No refresh has loaded a newer snapshot: look at the schedule's last runs.",
    )


def build_stale_sensor(channel: str, config: ReplicationConfig, send) -> dg.SensorDefinition:
    @dg.sensor(name=f"{channel}_on_stale_environment", minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description=f"Sends {channel} an alert when an environment's freshness check fails "
                           f"(older than alerts.stale_after), once per staleness.")
    def on_stale(context: dg.SensorEvaluationContext):
        reported = set(json.loads(context.cursor)) if context.cursor else set()
        newly, stale = stale_problems(context.instance, config, reported)
        if newly:
            alert = stale_alert(newly, config.alerts.ui_url)
            send(config.alerts, alert)
            context.log.info(f"sent to {channel}: {alert.title}")
        # Environments fresh again leave the cursor: their next staleness is news.
        context.update_cursor(json.dumps(sorted(stale)))
        if not newly:
            return dg.SkipReason(f"{len(stale)} environment(s) stale, already reported" if stale
                                 else "every environment is fresh (or never loaded)")
        return None

    return on_stale
