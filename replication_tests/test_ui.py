"""The Dagster UI, the daemon, the schedule and backfills, against real running processes."""

import os
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from replication.demo.local import LocalSetup

from .conftest import free_port
from .helpers import ASSETS, JOB
from .webserver_support import LOCATION, REPOSITORY, chromium_executable, graphql, launch_run, running_dagster_dev, \
    ui_page, wait_for_run

pytestmark = pytest.mark.ui
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Test configuration only: run monitoring checks every 2 s instead of every 30 s.
MONITORING_POLL_SECONDS = 2
ARTIFACTS = Path(REPO_ROOT) / "test-artifacts"


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory):
    """`dagster dev` (webserver and daemon) over an embedded PostgreSQL, as `make ui` starts it."""
    root = tmp_path_factory.mktemp("ui")
    setup = LocalSetup(root, free_port())
    server = setup.start(scale=0.05)
    instance_yaml = setup.dagster_home / "dagster.yaml"
    config = yaml.safe_load(instance_yaml.read_text())
    config["run_monitoring"]["poll_interval_seconds"] = MONITORING_POLL_SECONDS
    instance_yaml.write_text(yaml.safe_dump(config))
    try:
        env = {**os.environ, **setup.environment(server)}
        with running_dagster_dev(env, Path(REPO_ROOT), root / "dagster-dev.log", free_port()) as url:
            yield {"url": url, "setup": setup, "server": server, "log": root / "dagster-dev.log"}
    finally:
        server.stop()


def materialized_partitions(url: str, asset: str) -> set[str]:
    data = graphql(url, """query($key: AssetKeyInput!) { assetOrError(assetKey: $key) { ... on Asset {
        assetMaterializations { partition } } } }""", {"key": {"path": [asset]}})
    return {m["partition"] for m in data["assetOrError"]["assetMaterializations"]}


def test_materialize_four_assets_for_one_partition(dagster_dev):
    url = dagster_dev["url"]
    # The UI's Materialize button launches the implicit asset job over the selected assets.
    run_id = launch_run(url, "__ASSET_JOB", "2026-11-20", asset_keys=ASSETS)
    assert wait_for_run(url, run_id)["status"] == "SUCCESS"
    for asset in ASSETS:
        assert "2026-11-20" in materialized_partitions(url, asset)


CHECKS_QUERY = """query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
    assetChecksOrError { ... on AssetChecks { checks { name blocking
      executionForLatestMaterialization { status partition evaluation { success } } } } } } } }"""


def asset_checks(url: str, asset: str) -> dict[str, dict]:
    data = graphql(url, CHECKS_QUERY, {"key": {"path": [asset]}})["assetNodeOrError"]["assetChecksOrError"]
    return {check["name"]: check for check in data["checks"]}


def test_asset_checks_show_their_results_and_the_environments_block(dagster_dev):
    url = dagster_dev["url"]
    run_id = launch_run(url, JOB, "2026-11-19")
    assert wait_for_run(url, run_id)["status"] == "SUCCESS"
    expected = {"prod_snapshot": {"snapshot_files_match_manifest", "every_selected_table_captured"},
                **{f"{env}_db": {"rows_and_checksums_match_snapshot", "sequences_at_or_above_loaded_max",
                                 "no_orphaned_foreign_keys", "schema_matches_production", "freshness_check"}
                   for env in ("dev", "staging", "qa")}}
    # Drift from production and an environment's age are shown, never a stop.
    non_blocking = {"prod_snapshot", "schema_matches_production", "freshness_check"}
    for asset, names in expected.items():
        checks = asset_checks(url, asset)
        assert set(checks) == names, asset
        for check in checks.values():
            execution = check["executionForLatestMaterialization"]
            # An environment's checks block what is downstream; the snapshot's do not (each load
            # verifies every object itself before it connects).
            assert check["blocking"] == (not {asset, check["name"]} & non_blocking), (asset, check["name"])
            assert execution["status"] == "SUCCEEDED" and execution["evaluation"]["success"]


def test_backfill_of_three_partitions_runs_one_at_a_time(dagster_dev, capsys):
    url = dagster_dev["url"]
    partitions = ["2026-11-21", "2026-11-22", "2026-11-23"]
    data = graphql(url, """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
        __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""",
        {"p": {"partitionNames": partitions, "assetSelection": [{"path": [a]} for a in ASSETS]}})
    result = data["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    backfill_id = result["backfillId"]
    deadline = time.monotonic() + 600
    status = None
    while time.monotonic() < deadline:
        status = graphql(url, "query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } } }",
                         {"id": backfill_id})["partitionBackfillOrError"]["status"]
        if status not in ("REQUESTED", "IN_PROGRESS"):
            break
        time.sleep(3)
    assert status in ("COMPLETED", "COMPLETED_SUCCESS"), status
    runs = graphql(url, """query($tags: [ExecutionTag!]) { runsOrError(filter: {tags: $tags}) { ... on Runs { results {
        runId status startTime endTime tags { key value } } } } }""",
        {"tags": [{"key": "dagster/backfill", "value": backfill_id}]})["runsOrError"]["results"]
    runs.sort(key=lambda r: r["startTime"])
    with capsys.disabled():
        print(f"\nbackfill {backfill_id}:")
        for run in runs:
            partition = next(t["value"] for t in run["tags"] if t["key"] == "dagster/partition")
            print(f"  {partition}  run {run['runId'][:8]}  {run['status']}  "
                  f"start {datetime.fromtimestamp(run['startTime'], timezone.utc).isoformat(timespec='milliseconds')}  "
                  f"end {datetime.fromtimestamp(run['endTime'], timezone.utc).isoformat(timespec='milliseconds')}")
    assert all(run["status"] == "SUCCESS" for run in runs)
    assert {t["value"] for run in runs for t in run["tags"] if t["key"] == "dagster/partition"} == set(partitions)
    for earlier, later in zip(runs, runs[1:]):
        assert earlier["endTime"] <= later["startTime"], "two backfill runs were active at once"
    for asset in ASSETS:
        assert set(partitions) <= materialized_partitions(url, asset)


def test_schedule_is_running_and_its_midnight_tick_requests_that_day(dagster_dev):
    url = dagster_dev["url"]
    data = graphql(url, """query($s: ScheduleSelector!) { scheduleOrError(scheduleSelector: $s) { ... on Schedule {
        cronSchedule executionTimezone scheduleState { status }
        futureTicks(limit: 1) { results { timestamp evaluationResult { runRequests { tags { key value } } } } } } } }""",
        {"s": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY,
               "scheduleName": "database_replication_fanout_schedule"}})["scheduleOrError"]
    assert data["scheduleState"]["status"] == "RUNNING"
    assert (data["cronSchedule"], data["executionTimezone"]) == ("0 0 * * *", "UTC")
    tick = data["futureTicks"]["results"][0]
    tick_day = datetime.fromtimestamp(tick["timestamp"], timezone.utc)
    assert (tick_day.hour, tick_day.minute) == (0, 0)
    requested = [t["value"] for r in tick["evaluationResult"]["runRequests"] for t in r["tags"] if t["key"] == "dagster/partition"]
    assert requested == [tick_day.strftime("%Y-%m-%d")]


def test_run_past_its_max_runtime_is_failed_by_run_monitoring(dagster_dev):
    url, setup, server = dagster_dev["url"], dagster_dev["setup"], dagster_dev["server"]
    account = setup.accounts()["dev"]
    # Hold a lock in Dev so the load waits on TRUNCATE: the run cannot finish by itself in time.
    with server.connect(account.database) as blocker:
        blocker.autocommit = False
        blocker.execute("LOCK TABLE shop.products IN ACCESS SHARE MODE")
        before = blocker.execute("SELECT count(*) FROM shop.products").fetchone()[0]
        run_id = launch_run(url, JOB, "2026-11-24", tags={"dagster/max_runtime": "5"})
        info = wait_for_run(url, run_id, timeout=180)
        blocker.rollback()
    assert info["status"] == "FAILURE"
    assert info["endTime"] - info["startTime"] < 60
    events = graphql(url, """query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events {
        __typename ... on MessageEvent { message } } } } }""", {"id": run_id})["logsForRun"]["events"]
    assert any("maximum runtime" in (e.get("message") or "") for e in events), [e.get("message") for e in events][-10:]
    with server.connect(account.database) as conn:
        assert conn.execute("SELECT count(*) FROM shop.products").fetchone()[0] == before


def test_materialize_one_partition_by_clicking_in_the_ui(dagster_dev):
    """A person's path: the asset graph, Materialize all, one partition, Launch, and the run's Success."""
    executable = chromium_executable()
    url = dagster_dev["url"]
    partition = (datetime.now(timezone.utc) - timedelta(days=7)).strftime("%Y-%m-%d")
    ARTIFACTS.mkdir(exist_ok=True)
    with ui_page(executable, f"{url}/asset-groups/replication") as (page, sync_api):
        for asset in ASSETS:
            sync_api.expect(page.get_by_role("button", name=asset, exact=False).first).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "ui-asset-graph.png"))
        page.get_by_role("button", name="Materialize all…").click()
        dialog = page.get_by_role("dialog")
        sync_api.expect(dialog).to_contain_text("Launch runs to materialize 4 assets")
        partitions = dialog.get_by_placeholder("No matching partitions")
        partitions.click()
        partitions.fill(partition)
        partitions.press("Enter")
        sync_api.expect(dialog).to_contain_text("1 partition")
        dialog.get_by_role("button", name="Launch 1 run").click()
        launched = page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}"))
        sync_api.expect(launched).to_be_visible()
        short_id = re.search(r"[0-9a-f]{8}", launched.inner_text()).group(0)
        page.goto(f"{url}/runs", wait_until="networkidle")
        page.get_by_role("link", name=short_id).first.click()
        sync_api.expect(page.get_by_text("Success", exact=True).first).to_be_visible(timeout=240_000)
        page.screenshot(path=str(ARTIFACTS / "ui-materialization-success.png"))
        # The checks' results on the asset page, where a person looks for proof of a copy.
        page.goto(f"{url}/assets/dev_db?view=checks", wait_until="networkidle")
        sync_api.expect(page.get_by_text(re.compile(r"^Checks \(5\)$")).first).to_be_visible(timeout=60_000)
        sync_api.expect(page.get_by_text("Evaluation result").first).to_be_visible(timeout=60_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ARTIFACTS / "ui-asset-checks.png"))
    for asset in ASSETS:
        assert partition in materialized_partitions(url, asset)
