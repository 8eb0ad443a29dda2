"""A failed run read back as an alert, from a real run's events: the environment each failed step
works for, the partition, the step, the error's first line with secrets and row values hidden,
a failed blocking check by name, and the run's link."""

from __future__ import annotations

import dagster as dg
import pytest

from replication.alerts.failure import SNAPSHOT_FAILED, StepOwners, failure_alert
from replication.alerts.freshness import build_freshness_checks
from replication.alerts.message import scrub_line
from replication.config import parse_config

CONFIG = parse_config({"environments": {"dev": {}, "staging": {}, "qa": {}}})
FRESHNESS = build_freshness_checks(CONFIG)
PARTITIONS = dg.DailyPartitionsDefinition(start_date="2026-11-01")
UI = "https://dagster.example.com"


def _asset(name: str, error: Exception | None = None, deps=("prod_snapshot",)):
    @dg.asset(name=name, partitions_def=PARTITIONS, deps=list(deps))
    def _load():
        if error is not None:
            raise error

    return _load


def _snapshot(error: Exception | None = None):
    return _asset("prod_snapshot", error, deps=())


def _failed_run_alert(assets: list, checks: list = ()):
    with dg.instance_for_test() as instance:
        result = dg.materialize([*assets, *checks], partition_key="2026-11-20", instance=instance, raise_on_error=False)
        assert not result.success
        run = instance.get_run_by_id(result.run_id)
        (record,) = instance.get_records_for_run(run_id=result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
        context = dg.build_run_status_sensor_context(
            sensor_name="slack_on_run_failure", dagster_event=record.event_log_entry.dagster_event,
            dagster_instance=instance, dagster_run=run).for_run_failure()
        return failure_alert(context, StepOwners.of(CONFIG, FRESHNESS), UI)


def test_a_failed_load_names_dev_the_partition_the_step_and_the_first_line_of_its_failure(monkeypatch):
    failure = dg.Failure(description="dev_db from 127.0.0.1:5999/dev: connection failed: Connection refused\n"
                                     "Is the server running on that host and accepting TCP/IP connections?",
                         allow_retries=False)
    alert = _failed_run_alert([_snapshot(), _asset("dev_db", failure), _asset("staging_db")])
    assert alert.kind == "run_failed"
    assert alert.title == "Replication failed: Dev, partition 2026-11-20"
    (problem,) = alert.problems
    assert (problem.environment, problem.step) == ("Dev", "dev_db")
    assert problem.error == "dev_db from 127.0.0.1:5999/dev: connection failed: Connection refused"
    assert alert.run_url == f"{UI}/runs/{alert.run_id}"
    print(alert.text())


def test_an_unexpected_exception_loses_its_class_path_and_every_secret_it_carried(monkeypatch):
    monkeypatch.setenv("DEV_DB_PASSWORD", "pw-dev-91ac")
    monkeypatch.setenv("MASKING_KEY", "masking-key-77f0")
    error = RuntimeError("connect to postgresql://loader:pw-dev-91ac@db:5432/dev failed with key masking-key-77f0; "
                         "Key (email)=(ann@example.com) already exists.")
    alert = _failed_run_alert([_snapshot(), _asset("dev_db", error)])
    (problem,) = alert.problems
    assert problem.error.startswith("connect to postgresql://********@db:5432/dev failed with key ********")
    for secret in ("pw-dev-91ac", "masking-key-77f0", "ann@example.com", "RuntimeError"):
        assert secret not in alert.text()
    assert "(email)=(value hidden" in problem.error


def test_a_failed_snapshot_says_that_no_environment_was_loaded():
    alert = _failed_run_alert([_snapshot(dg.Failure("prod_snapshot: permission denied for table orders")),
                               _asset("dev_db"), _asset("qa_db")])
    (problem,) = alert.problems
    assert (problem.environment, problem.step) == (SNAPSHOT_FAILED, "prod_snapshot")


def test_a_failed_blocking_check_is_named_with_what_it_found():
    spec = dg.AssetCheckSpec("rows_and_checksums_match_snapshot", asset="qa_db", blocking=True)

    @dg.multi_asset_check(specs=[spec], name="qa_db_checks")
    def qa_db_checks():
        yield dg.AssetCheckResult(asset_key="qa_db", check_name=spec.name, passed=False,
                                  description="Rows differ: shop.orders has 10 rows, the snapshot 11. Run the partition again.")

    alert = _failed_run_alert([_snapshot(), _asset("qa_db")], [qa_db_checks])
    assert alert.kind == "check_failed"
    assert alert.title == "Replication check failed: QA, partition 2026-11-20"
    (problem,) = alert.problems
    assert (problem.environment, problem.step) == ("QA", "qa_db_checks")
    assert problem.error == ("check rows_and_checksums_match_snapshot failed: Rows differ: shop.orders has 10 rows, "
                             "the snapshot 11. Run the partition again.")


@pytest.mark.parametrize("text, shown", [
    ("a\nb", "a"),
    ("", "(no error message)"),
    ("dagster._core.errors.DagsterExecutionInterruptedError: interrupted", "interrupted"),
    ("dev_db: lock wait ended", "dev_db: lock wait ended"),
    ("Failing row contains (1, ann@example.com).", "Failing row contains (value hidden: masked or personal column)."),
    ("x" * 1000, "x" * 399 + "…"),
])
def test_scrub_line(text, shown):
    assert scrub_line(text, secrets=[]) == shown


def test_every_step_of_a_run_is_owned_by_its_environment_freshness_checks_included():
    owners = StepOwners.of(CONFIG, FRESHNESS)
    freshness = {next(iter(c.check_specs)).asset_key.to_user_string(): c.node_def.name for c in FRESHNESS}
    assert {step: owners.environment_of(step) for step in ("dev_db", "dev_db_checks", freshness["dev_db"],
                                                           freshness["qa_db"], "prod_snapshot_checks", "unknown")} == {
        "dev_db": "Dev", "dev_db_checks": "Dev", freshness["dev_db"]: "Dev", freshness["qa_db"]: "QA",
        "prod_snapshot_checks": "production snapshot", "unknown": "the run"}
