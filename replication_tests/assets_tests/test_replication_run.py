"""Whole partitions through Dagster against real PostgreSQL: equality, reuse, faults, bad input."""

import json

import dagster as dg
import pytest

from replication import defs

from ..conftest import ENVIRONMENTS, free_port
from ..helpers import JOB, PARTITION, stored_text


def run_job(instance, run_config=None, asset_selection=None, raise_on_error=True):
    job = defs.resolve_job_def(JOB)
    return job.execute_in_process(
        partition_key=PARTITION,
        instance=instance,
        run_config=run_config or {},
        asset_selection=asset_selection,
        raise_on_error=raise_on_error,
    )


def materializations(result):
    return {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}


def _error_text(error) -> str:
    """A step error's message with its causes: Dagster wraps exceptions that are not dg.Failure."""
    parts = []
    while error is not None:
        parts.append(error.message)
        error = error.cause
    return "\n".join(parts)


def failure_messages(result):
    return {e.step_key: _error_text(e.event_specific_data.error) for e in result.get_step_failure_events()}


def event_log_text(instance, run_id) -> str:
    return "\n".join(dg.serialize_value(record) for record in instance.all_logs(run_id))


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def test_full_partition_makes_every_environment_equal_prod(cluster, replication_env, instance):
    result = run_job(instance)
    assert result.success
    prod = cluster.fingerprints("prod")
    assert set(prod) == {"Ops.Audit Log", "shop.customers", "shop.order_items", "shop.orders", "shop.products"}
    for env in ENVIRONMENTS:
        assert cluster.fingerprints(env) == prod, env

    metadata = materializations(result)
    snap = metadata["prod_snapshot"]
    assert snap["reused"].value is False
    assert snap["snapshot_path"].value == str(replication_env / "prod_snapshot_20261125")
    assert snap["dagster/row_count"].value == sum(rows for rows, _ in prod.values())
    assert snap["rows/shop.order_items"].value == prod["shop.order_items"][0]
    assert snap["bytes/shop.order_items"].value > 0
    summary = snap["table_summary"].value
    assert [c.name for c in summary.schema.columns] == ["table", "rows", "bytes", "seconds", "rows_per_second", "sha256"]
    assert {r.data["table"]: r.data["rows"] for r in summary.records}["shop.order_items"] == prod["shop.order_items"][0]
    preview_key = next(k for k in snap if k.startswith("preview ("))
    assert preview_key == "preview (shop.order_items)" and snap[preview_key].value.count("\n") == 11  # header, rule, 10 rows
    for env in ENVIRONMENTS:
        loaded = metadata[f"{env}_db"]
        assert loaded["checksums_verified"].value is True
        assert loaded["rows/shop.customers"].value == prod["shop.customers"][0]
        assert {r.data["checksum"] for r in loaded["table_summary"].value.records} == {"matches prod"}

    # Production data and credentials stay where they belong.
    log = event_log_text(instance, result.run_id)
    stored = stored_text(replication_env / "prod_snapshot_20261125")
    assert "shop.customers" in stored and "@" in stored  # decoded: the check below can see data
    for password in cluster.passwords:
        assert password not in log
        assert password not in stored


def test_second_materialization_reuses_the_snapshot_without_reading_prod(cluster, replication_env, instance, monkeypatch):
    assert run_job(instance).success
    manifest = json.loads((replication_env / "prod_snapshot_20261125" / "manifest.json").read_text())
    # Nothing listens here: any attempt to read prod would fail the run.
    monkeypatch.setenv("PROD_DB_CONNECTION", f"127.0.0.1:{free_port()}/prod")
    again = run_job(instance)
    assert again.success
    assert materializations(again)["prod_snapshot"]["reused"].value is True

    refresh = {"ops": {"prod_snapshot": {"config": {"refresh": True}}}}
    failed = run_job(instance, refresh, asset_selection=[dg.AssetKey("prod_snapshot")], raise_on_error=False)
    assert "Connection refused" in failure_messages(failed)["prod_snapshot"]  # a refresh does go to prod
    monkeypatch.setenv("PROD_DB_CONNECTION", cluster.env_vars()["PROD_DB_CONNECTION"])
    refreshed = run_job(instance, refresh)
    assert refreshed.success
    assert materializations(refreshed)["prod_snapshot"]["reused"].value is False
    assert json.loads((replication_env / "prod_snapshot_20261125" / "manifest.json").read_text())["captured_at"] >= manifest["captured_at"]


def test_failing_environment_keeps_its_data_and_spares_the_others(cluster, replication_env, instance):
    assert run_job(instance).success
    with cluster.altered("prod", "UPDATE shop.customers SET note = coalesce(note, '') || ' (v2)' WHERE id % 50 = 0",
                         "UPDATE shop.customers SET note = nullif(replace(note, ' (v2)', ''), '') WHERE id % 50 = 0"):
        before_dev = cluster.fingerprints("dev")
        with cluster.altered("dev", "ALTER TABLE shop.order_items ADD CONSTRAINT dev_small CHECK (quantity < 4) NOT VALID",
                             "ALTER TABLE shop.order_items DROP CONSTRAINT IF EXISTS dev_small"):
            result = run_job(instance, {"ops": {"prod_snapshot": {"config": {"refresh": True}}}}, raise_on_error=False)
            prod_now = cluster.fingerprints("prod")
    assert not result.success
    messages = failure_messages(result)
    assert set(messages) == {"dev_db"}
    assert "dev_db from dev (" in messages["dev_db"] and "dev_small" in messages["dev_db"]
    assert "Retrying will not help" in messages["dev_db"]
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)
    assert cluster.fingerprints("dev") == before_dev
    assert cluster.fingerprints("staging") == prod_now
    assert cluster.fingerprints("qa") == prod_now


def test_missing_credential_variable_is_named_before_anything_runs(cluster, replication_env, instance, monkeypatch):
    before = cluster.fingerprints("staging")
    monkeypatch.delenv("STAGING_DB_PASSWORD")
    with pytest.raises(dg.DagsterInvalidConfigError, match="STAGING_DB_PASSWORD"):
        run_job(instance)
    assert list(replication_env.iterdir()) == []
    assert cluster.fingerprints("staging") == before


def test_unknown_table_in_config_fails_without_writing(cluster, replication_env, instance):
    config = {"ops": {"prod_snapshot": {"config": {"include": ["shop.customers", "shop.invoices"]}}}}
    result = run_job(instance, config, raise_on_error=False)
    message = failure_messages(result)["prod_snapshot"]
    assert "No table in production matches 'shop.invoices'" in message and "Fix `snapshot.include`" in message
    assert list(replication_env.iterdir()) == []
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)


def test_target_missing_a_table_names_environment_and_table(cluster, replication_env, instance):
    assert run_job(instance).success
    before = cluster.fingerprints("qa")
    with cluster.altered("qa", 'ALTER TABLE "Ops"."Audit Log" SET SCHEMA public',
                         'ALTER TABLE public."Audit Log" SET SCHEMA "Ops"'):
        result = run_job(instance, asset_selection=[dg.AssetKey("qa_db")], raise_on_error=False)
        after = cluster.fingerprints("qa")
    assert "qa: table Ops.Audit Log does not exist in the target database" in failure_messages(result)["qa_db"]
    before.pop("Ops.Audit Log")
    after.pop("public.Audit Log")
    assert after == before


def test_target_missing_a_column_names_environment_table_and_column(cluster, replication_env, instance):
    assert run_job(instance).success
    with cluster.altered("staging", "ALTER TABLE shop.orders DROP COLUMN pickup_time",
                         "ALTER TABLE shop.orders ADD COLUMN pickup_time time"):
        before = cluster.fingerprints("staging")
        result = run_job(instance, asset_selection=[dg.AssetKey("staging_db")], raise_on_error=False)
        assert "staging: column 'pickup_time' of table shop.orders does not exist" in failure_messages(result)["staging_db"]
        assert cluster.fingerprints("staging") == before


def test_snapshot_altered_after_capture_is_refused(cluster, replication_env, instance):
    assert run_job(instance).success
    before = {env: cluster.fingerprints(env) for env in ENVIRONMENTS}
    # The default store compresses: one byte of the object changed, its size the same.
    path = replication_env / "prod_snapshot_20261125" / "shop.customers.csv.zst"
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0x20
    path.write_bytes(bytes(damaged))
    # Only the loads: a prod_snapshot step would notice the damage and capture again.
    loads = [dg.AssetKey(f"{env}_db") for env in ENVIRONMENTS]
    result = run_job(instance, asset_selection=loads, raise_on_error=False)
    messages = failure_messages(result)
    assert set(messages) == {"dev_db", "staging_db", "qa_db"}
    for message in messages.values():
        assert "shop.customers.csv.zst for table shop.customers was changed after capture" in message
        assert "refresh: true" in message
    assert {env: cluster.fingerprints(env) for env in ENVIRONMENTS} == before


def test_unreachable_host_is_reported_as_temporary_without_secrets(cluster, replication_env, instance, monkeypatch):
    port = free_port()
    monkeypatch.setenv("PROD_DB_CONNECTION", f"127.0.0.1:{port}/prod")
    result = run_job(instance, asset_selection=[dg.AssetKey("prod_snapshot")], raise_on_error=False)
    message = failure_messages(result)["prod_snapshot"]
    assert f"prod_snapshot {PARTITION} from prod (127.0.0.1:{port}/prod)" in message
    assert "Connection refused" in message and "will be retried" in message
    assert "Exceeded max_retries of 2" in message and "TransientReplicationError" in message
    assert sum(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events) == 2
    assert cluster.accounts["prod"].password not in event_log_text(instance, result.run_id)
    assert list(replication_env.iterdir()) == []


def test_wrong_password_is_permanent_and_not_echoed(cluster, replication_env, instance, monkeypatch):
    monkeypatch.setenv("PROD_DB_PASSWORD", "Wrong-Pa55word-xyz")
    result = run_job(instance, raise_on_error=False)
    message = failure_messages(result)["prod_snapshot"]
    assert "password authentication failed" in message and "Retrying will not help" in message
    assert "Wrong-Pa55word-xyz" not in event_log_text(instance, result.run_id)
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)
