"""The code location loads, and its assets, job, schedule and partitions are what we promised."""

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg

from replication import defs
from replication.config import ReplicationConfig, env_vars_for
from replication.executors import select_executor
from replication.partitions import daily_partitions

from .helpers import ASSETS, JOB

REPO = Path(__file__).resolve().parents[1]


def test_dagster_definitions_validate(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PROD_", "DEV_", "STAGING_", "QA_"))}
    env["DAGSTER_HOME"] = str(tmp_path)  # an empty home: the default SQLite instance
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", str(REPO / "workspace.yaml")],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


def test_assets_group_dependencies_and_retry_policy():
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == set(ASSETS)
    for name in ASSETS:
        assets_def = defs.resolve_assets_def(name)
        assert assets_def.group_names_by_key[dg.AssetKey(name)] == "replication"
        assert assets_def.partitions_def == daily_partitions
        policy = assets_def.op.retry_policy
        assert policy.max_retries == 2, name
    for env in ("dev_db", "staging_db", "qa_db"):
        assert graph.get(dg.AssetKey(env)).parent_keys == {dg.AssetKey("prod_snapshot")}


def test_shipped_retry_policy_is_two_retries_300_s_apart(tmp_path):
    """Checked in a process without the test suite's short REPLICATION_RETRY_DELAY_SECONDS."""
    env = {k: v for k, v in os.environ.items() if k != "REPLICATION_RETRY_DELAY_SECONDS"}
    script = ("from replication import defs\n"
              "for key in sorted(defs.resolve_asset_graph().get_all_asset_keys()):\n"
              "    p = defs.resolve_assets_def(key).op.retry_policy\n"
              "    print(key.to_user_string(), p.max_retries, p.delay)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split("\n")[:-1]) == sorted(f"{name} 2 300" for name in ASSETS)


def test_resources_read_the_documented_variables():
    resources = defs.resources
    assert set(resources) >= {"prod_db", "dev_db_target", "staging_db_target", "qa_db_target", "snapshot_store"}
    for key, env in [("prod_db", "prod"), ("dev_db_target", "dev"), ("staging_db_target", "staging"), ("qa_db_target", "qa")]:
        fields = resources[key]._get_non_default_public_field_values()  # noqa: SLF001 - the configured EnvVars
        prefix = env.upper()
        assert env_vars_for(env) == (f"{prefix}_DB_CONNECTION", f"{prefix}_DB_USER", f"{prefix}_DB_PASSWORD")
        assert fields["connection"] == dg.EnvVar(f"{prefix}_DB_CONNECTION")
        assert fields["user"] == dg.EnvVar(f"{prefix}_DB_USER")
        assert fields["password"] == dg.EnvVar(f"{prefix}_DB_PASSWORD")


def test_partitions_are_daily_from_2024_and_include_today():
    assert daily_partitions.get_first_partition_key() == "2024-01-01"
    assert daily_partitions.timezone == "UTC"
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    assert daily_partitions.get_last_partition_key() == today


def test_job_description_tags_and_selection():
    job = defs.resolve_job_def(JOB)
    assert job.description == "Daily replication from production to Dev, Staging and QA."
    assert {"database", "replication", "fan-out", "daily"} <= set(job.tags)
    assert job.tags["dagster/max_runtime"] == "3600"
    assert {k.to_user_string() for k in job.asset_layer.asset_graph.get_all_asset_keys()} >= set(ASSETS)
    assert job.partitions_def == daily_partitions


def test_schedule_runs_daily_at_midnight_utc_and_requests_that_day():
    schedule = defs.resolve_schedule_def("database_replication_fanout_schedule")
    assert schedule.cron_schedule == "0 0 * * *"
    assert schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == "database_replication_fanout"
    tick = datetime(2026, 11, 25, 0, 0, tzinfo=timezone.utc)
    with dg.build_schedule_context(scheduled_execution_time=tick) as context:
        requests = schedule.evaluate_tick(context).run_requests
    assert [r.partition_key for r in requests] == ["2026-11-25"]


def test_executor_is_on_definitions_and_follows_replication_executor(monkeypatch):
    assert defs.executor is not None
    monkeypatch.setenv("REPLICATION_EXECUTOR", "docker")
    assert select_executor(ReplicationConfig()).name == "replication_docker"
    monkeypatch.setenv("REPLICATION_EXECUTOR", "")
    assert select_executor(ReplicationConfig()).name == "replication_multiprocess"


def test_instance_config_enables_monitoring_one_run_and_postgres_storage():
    import yaml

    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    assert config["run_monitoring"] == {"enabled": True, "max_runtime_seconds": 3600, "poll_interval_seconds": 30}
    assert config["run_coordinator"]["config"]["max_concurrent_runs"] == 1
    assert set(config["storage"]["postgres"]["postgres_db"]) == {"hostname", "port", "db_name", "username", "password"}
    assert all(v == {"env": f"DAGSTER_PG_{k.upper().replace('HOSTNAME', 'HOST').replace('DB_NAME', 'DB')}"}
               for k, v in config["storage"]["postgres"]["postgres_db"].items())
