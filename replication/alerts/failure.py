"""A failed run as an alert: which steps failed, in which environments, with which error, and
whether a blocking check stopped it (the check's name and what it found, not Dagster's summary)."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg
from dagster._core.definitions.run_status_sensor_definition import RunFailureSensorContext

from ..config import ReplicationConfig, names_for
from ..engine.storage.location import SNAPSHOT_ASSET
from .message import Alert, Problem, scrub_line

PARTITION_TAG = "dagster/partition"
RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
# Nothing was loaded when the snapshot failed: every environment waited on it.
SNAPSHOT_FAILED = "every environment (none loaded: the snapshot failed)"


@dataclass(frozen=True)
class StepOwners:
    """Step key -> the environment it works for, in prose ("Dev")."""

    owners: dict[str, str]

    @classmethod
    def of(cls, config: ReplicationConfig, freshness: list[dg.AssetChecksDefinition]) -> StepOwners:
        owners = {SNAPSHOT_ASSET: SNAPSHOT_FAILED, f"{SNAPSHOT_ASSET}_checks": "production snapshot"}
        for name in config.environment_names:
            names = names_for(name)
            owners[names.asset] = owners[names.checks] = names.display
        # Dagster names a freshness check's op after a hash of its asset: learn it from the op.
        for check in freshness:
            (asset,) = {spec.asset_key.to_user_string() for spec in check.check_specs}
            owners[check.node_def.name] = owners[asset]
        return cls(owners)

    def environment_of(self, step_key: str | None) -> str:
        return self.owners.get(step_key or "", "the run")


def partition_of(tags: dict[str, str]) -> str | None:
    if PARTITION_TAG in tags:
        return tags[PARTITION_TAG]
    start, end = (tags.get(tag) for tag in RANGE_TAGS)
    return f"{start}...{end}" if start and end else None


def step_error(event: dg.DagsterEvent) -> str:
    """What the step said: a Failure's description, else the innermost exception's message."""
    data = event.step_failure_data
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description
    error = data.error
    if error is None:
        return event.message or ""
    while error.cause is not None:  # Dagster wraps the asset's exception; its own is the cause
        error = error.cause
    return error.message


def failed_blocking_checks(instance: dg.DagsterInstance, run_id: str) -> dict[str, list[str]]:
    """Step key -> "check <name> failed: <what it found>" for each blocking check that failed."""
    found: dict[str, list[str]] = {}
    records = instance.get_records_for_run(run_id=run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    for record in records:
        entry = record.event_log_entry
        evaluation = entry.dagster_event.asset_check_evaluation_data
        if evaluation.passed or not evaluation.blocking:
            continue
        found.setdefault(entry.step_key or "", []).append(
            f"check {evaluation.check_name} failed: {evaluation.description or 'no description'}")
    return found


def failure_alert(context: RunFailureSensorContext, owners: StepOwners, ui_url: str) -> Alert:
    run = context.dagster_run
    checks = failed_blocking_checks(context.instance, run.run_id)
    problems = []
    for event in context.get_step_failure_events():
        reasons = checks.get(event.step_key or "")
        error = "; ".join(scrub_line(reason) for reason in reasons) if reasons else scrub_line(step_error(event))
        problems.append(Problem(owners.environment_of(event.step_key), event.step_key or "(run)", error))
    if not problems:  # the run failed outside any step: its time limit, a lost run worker
        problems.append(Problem("the run", "(run)", scrub_line(context.failure_event.message or "")))
    return Alert(
        kind="check_failed" if checks else "run_failed",
        partition=partition_of(run.tags),
        problems=tuple(problems),
        run_id=run.run_id,
        run_url=f"{ui_url}/runs/{run.run_id}",
        job=run.job_name,
    )
