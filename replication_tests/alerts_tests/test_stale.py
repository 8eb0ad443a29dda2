"""Freshness and stale alerts with Dagster's own freshness checks on a real instance: an
environment holding production older than `stale_after` fails its check; the stale sensor reports
it once, however often the check fails again, and again only after a load made it fresh."""

from __future__ import annotations

import time

import dagster as dg
import pytest

from replication.alerts.freshness import FRESHNESS_CHECK, build_freshness_checks, freshness_check_key
from replication.alerts.stale import build_stale_sensor
from replication.config import parse_config
from replication.partitions import daily_partitions

CONFIG = parse_config({"environments": {"dev": {}, "qa": {}},
                       "alerts": {"webhook": {}, "stale_after": "26h", "ui_url": "https://dagster.example.com"}})
HOUR = 3600


def environment(name: str, holds_production_from: float, fails: bool = False) -> dg.AssetsDefinition:
    """An environment asset reporting the capture time of what it loaded, as the real one does."""
    @dg.asset(name=f"{name}_db", partitions_def=daily_partitions)
    def load():
        if fails:
            raise dg.Failure(f"{name}_db: connection refused")
        return dg.MaterializeResult(metadata={
            "dagster/last_updated_timestamp": dg.MetadataValue.timestamp(holds_production_from)})

    return load


class Sensor:
    """The stale sensor as the daemon runs it: each tick starts from the cursor the last one left."""

    def __init__(self, instance: dg.DagsterInstance):
        self.instance, self.cursor, self.sent = instance, None, []
        self.definition = build_stale_sensor("webhook", CONFIG, lambda settings, alert: self.sent.append(alert))

    def tick(self):
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor)
        result = self.definition(context)
        self.cursor = context.cursor
        return result


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def load(instance, name: str, age_hours: float, partition: str = "2026-11-20", fails: bool = False):
    checks = build_freshness_checks(CONFIG)
    result = dg.materialize([environment(name, time.time() - age_hours * HOUR, fails), *checks], instance=instance,
                            partition_key=partition, selection=[f"{name}_db"], raise_on_error=False)
    assert result.success is not fails
    return result


def evaluate_freshness(instance, name: str) -> bool:
    """One evaluation of the freshness check, as the freshness sensor launches it between loads."""
    checks = build_freshness_checks(CONFIG)
    result = dg.materialize([*checks], instance=instance, selection=dg.AssetSelection.checks(freshness_check_key(name)))
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation.passed


def test_the_checks_are_one_per_environment_and_carry_stale_after():
    checks = build_freshness_checks(CONFIG)
    keys = {spec.key for check in checks for spec in check.check_specs}
    assert keys == {freshness_check_key("dev"), freshness_check_key("qa")}
    spec = next(iter(checks[0].check_specs))
    assert spec.name == FRESHNESS_CHECK
    assert spec.metadata["dagster/freshness_params"].data["lower_bound_delta_seconds"] == 26 * HOUR


def test_a_stale_environment_is_reported_once_then_again_after_it_was_fresh(instance):
    sensor = Sensor(instance)
    load(instance, "dev", age_hours=2)
    load(instance, "qa", age_hours=30, partition="2026-11-18")
    sensor.tick()
    (alert,) = sensor.sent
    assert alert.kind == "stale" and alert.environments == ["QA"]
    assert alert.partition == "2026-11-18"
    (problem,) = alert.problems
    assert problem.step == FRESHNESS_CHECK
    assert "(stale after 26.0 h)" in problem.error and "partition 2026-11-18" in problem.error
    assert alert.run_url.startswith("https://dagster.example.com/runs/")

    # The check fails again on later evaluations; the sensor ticks on: nothing more is sent.
    assert evaluate_freshness(instance, "qa") is False
    for _ in range(3):
        assert isinstance(sensor.tick(), dg.SkipReason)
    assert len(sensor.sent) == 1

    # A run that fails to load QA leaves its freshness check planned and never evaluated: QA is
    # still the stale environment already reported (that run's failure has an alert of its own).
    load(instance, "qa", age_hours=0, partition="2026-11-21", fails=True)
    sensor.tick()
    assert evaluate_freshness(instance, "qa") is False
    sensor.tick()
    assert len(sensor.sent) == 1

    # A load makes QA fresh: its next staleness is news again.
    load(instance, "qa", age_hours=1, partition="2026-11-19")
    sensor.tick()
    assert len(sensor.sent) == 1
    load(instance, "qa", age_hours=27, partition="2026-11-12")  # last week's snapshot restored
    sensor.tick()
    assert [a.environments for a in sensor.sent] == [["QA"], ["QA"]]
    assert sensor.sent[1].partition == "2026-11-12"


def test_a_failed_send_is_tried_again_on_the_next_tick(instance):
    attempts = []

    def refuse_once(settings, alert):
        attempts.append(alert)
        if len(attempts) == 1:
            raise ConnectionError("the webhook is down")

    sensor = build_stale_sensor("webhook", CONFIG, refuse_once)
    load(instance, "dev", age_hours=40)
    context = dg.build_sensor_context(instance=instance)
    with pytest.raises(ConnectionError):
        sensor(context)
    # Dagster keeps the cursor of a failed tick no more than its result: the next tick starts from none.
    context = dg.build_sensor_context(instance=instance, cursor=None)
    sensor(context)
    assert [a.environments for a in attempts] == [["Dev"], ["Dev"]]


def test_an_environment_never_loaded_is_not_reported_as_stale(instance):
    sensor = Sensor(instance)
    assert evaluate_freshness(instance, "dev") is False  # "never materialized" fails the check
    assert isinstance(sensor.tick(), dg.SkipReason)
    assert sensor.sent == []
