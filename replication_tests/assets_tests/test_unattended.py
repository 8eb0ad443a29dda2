"""Months on a schedule: retention, truthful backfills and restores, checks that fail, guards that refuse."""

import os
import subprocess
import uuid
from datetime import datetime, timezone

import dagster as dg
import pytest

from replication.assets import build_environment_assets, prod_snapshot
from replication.checks import build_checks
from replication.config import parse_config
from replication.definitions import build_definitions
from replication.partitions import daily_partitions
from replication.resources import build_resources

from ..conftest import ENVIRONMENTS
from ..helpers import JOB
from .test_replication_run import failure_messages, materializations


def definitions(**snapshot):
    return build_definitions(parse_config({"snapshot": {"include": ["*"], **snapshot}}))


def run(defs, instance, partition, run_config=None, assets=None):
    return defs.resolve_job_def(JOB).execute_in_process(
        partition_key=partition, instance=instance, run_config=run_config or {}, raise_on_error=False,
        asset_selection=[dg.AssetKey(a) for a in assets] if assets else None)


def check_results(result) -> dict[str, bool]:
    return {f"{e.asset_key.to_user_string()}:{e.check_name}": e.passed for e in result.get_asset_check_evaluations()}


def checks_only(defs_config):
    """The checks without the loads, to look at a damaged environment without reloading it.

    prod_snapshot comes along (a job needs a partitioned asset); it reuses the retained snapshot.
    """
    config = parse_config(defs_config)
    defs = dg.Definitions(
        assets=[prod_snapshot, *build_environment_assets(config)], asset_checks=build_checks(config),
        resources=build_resources(config),
        jobs=[dg.define_asset_job("checks", selection=dg.AssetSelection.assets("prod_snapshot") | dg.AssetSelection.all_asset_checks(),
                                   partitions_def=daily_partitions)])
    return defs.resolve_job_def("checks")


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def test_retention_keeps_exactly_n_across_a_backfill(cluster, replication_env, instance, capsys):
    defs = definitions(keep=3)
    days = [f"2026-10-{day:02d}" for day in range(1, 11)]
    for day in days:  # ten partitions one after another, as a backfill runs them
        assert run(defs, instance, day).success
    remaining = sorted(p.name for p in replication_env.iterdir())
    with capsys.disabled():
        print(f"\n10-day backfill with keep: 3 leaves {remaining}")
    assert remaining == ["prod_snapshot_20261008", "prod_snapshot_20261009", "prod_snapshot_20261010"]
    log = "\n".join(e.message or "" for e in instance.all_logs(instance.get_runs()[0].run_id))
    assert "Retention (snapshot.keep: 3): deleted prod_snapshot_20261007" in log


def test_a_past_partition_is_captured_honestly_or_refused(cluster, replication_env, instance):
    captured = run(definitions(), instance, "2024-03-01", assets=["prod_snapshot"])
    assert captured.success
    snap = materializations(captured)["prod_snapshot"]
    assert snap["partition"].value == "2024-03-01" and snap["captured_after_partition_day"].value is True
    assert snap["captured_at"].value.startswith(datetime.now(timezone.utc).strftime("%Y-%m-%d"))
    warnings = [e.message for e in instance.all_logs(captured.run_id) if e.level == 30]
    assert any("2024-03-01 is in the past and has no retained snapshot" in w for w in warnings)

    before = sorted(p.name for p in replication_env.iterdir())
    refused = run(definitions(backfill_missing="refuse"), instance, "2024-03-02")
    message = failure_messages(refused)["prod_snapshot"]
    print(f"\nrefused backfill: {message}")
    assert "No retained snapshot of 2024-03-02" in message and "backfill_missing is refuse" in message
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in refused.all_events)
    assert sorted(p.name for p in replication_env.iterdir()) == before
    # A retained past partition is still a restore under refuse.
    assert run(definitions(backfill_missing="refuse"), instance, "2024-03-01").success


def test_materializing_an_older_retained_partition_restores_that_days_data(cluster, replication_env, instance):
    defs = definitions()
    assert run(defs, instance, "2026-11-03").success
    tuesday = cluster.fingerprints("prod")
    with cluster.altered("prod", "UPDATE shop.products SET price = price + 1 WHERE id <= 100",
                         "UPDATE shop.products SET price = price - 1 WHERE id <= 100"):
        assert run(defs, instance, "2026-11-04").success
        assert cluster.fingerprints("dev") != tuesday
        restored = run(defs, instance, "2026-11-03")
        assert restored.success
        assert materializations(restored)["prod_snapshot"]["reused"].value is True
        for env in ENVIRONMENTS:
            assert cluster.fingerprints(env) == tuesday
            assert materializations(restored)[f"{env}_db"]["load_mode"].value == "swap"


def test_every_check_passes_on_a_good_load_and_fails_on_damage(cluster, replication_env, instance):
    result = run(definitions(), instance, "2026-11-05")
    assert result.success
    checks = check_results(result)
    # Three blocking checks per environment, the non-blocking drift check and its freshness check
    # (fresh: the snapshot was captured now, whatever the partition's day).
    assert len(checks) == 2 + 5 * len(ENVIRONMENTS) and all(checks.values()), checks
    assert all(checks[f"{env}_db:freshness_check"] for env in ENVIRONMENTS)
    job = checks_only({"snapshot": {"include": ["*"]}})
    damage = {
        "dev_db:rows_and_checksums_match_snapshot": ("DELETE FROM shop.order_items WHERE id = (SELECT min(id) FROM shop.order_items)", None),
        "staging_db:rows_and_checksums_match_snapshot": ("UPDATE shop.customers SET note = 'changed' WHERE id = 7", None),
        "qa_db:sequences_at_or_above_loaded_max": ("SELECT setval('shop.products_id_seq', 5)", None),
        "dev_db:no_orphaned_foreign_keys": (
            "ALTER TABLE shop.orders DROP CONSTRAINT orders_customer_id_fkey; "
            "UPDATE shop.orders SET customer_id = 987654321 WHERE id = (SELECT min(id) FROM shop.orders); "
            "ALTER TABLE shop.orders ADD CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id) "
            "REFERENCES shop.customers (id) NOT VALID", None),
    }
    for check, (sql, _) in damage.items():
        env = check.split("_db:")[0]
        with cluster.connect(env) as conn:
            conn.execute(sql)
    damaged = job.execute_in_process(partition_key="2026-11-05", instance=instance, raise_on_error=False)
    results = check_results(damaged)
    failed = {name for name, passed in results.items() if not passed}
    # Re-adding the key NOT VALID is drift from production too, and the drift check says so.
    assert failed == set(damage) | {"dev_db:schema_matches_production"}, results
    evaluation = {f"{e.asset_key.to_user_string()}:{e.check_name}": e for e in damaged.get_asset_check_evaluations()}
    assert "987654321" not in (evaluation["dev_db:no_orphaned_foreign_keys"].description or "")
    assert "1 in shop.orders (orders_customer_id_fkey" in evaluation["dev_db:no_orphaned_foreign_keys"].description
    assert "shop.products_id_seq would give" in evaluation["qa_db:sequences_at_or_above_loaded_max"].description
    # The next run repairs all of it (the orphan's foreign key comes back NOT VALID, as it was).
    repaired = run(definitions(), instance, "2026-11-05")
    drift = {name for name, passed in check_results(repaired).items() if not passed}
    assert drift == {"dev_db:schema_matches_production"}, check_results(repaired)
    evaluation = {f"{e.asset_key.to_user_string()}:{e.check_name}": e for e in repaired.get_asset_check_evaluations()}
    assert "constraint orders_customer_id_fkey on shop.orders differs" in \
        evaluation["dev_db:schema_matches_production"].description
    with cluster.connect("dev") as conn:
        conn.execute("ALTER TABLE shop.orders VALIDATE CONSTRAINT orders_customer_id_fkey")


def test_a_target_that_is_production_under_another_name_is_refused(cluster, replication_env, instance, monkeypatch):
    assert run(definitions(), instance, "2026-11-06").success
    prod_before, dev_before = cluster.fingerprints("prod"), cluster.fingerprints("dev")
    prod_address = cluster.env_vars()["PROD_DB_CONNECTION"]
    monkeypatch.setenv("DEV_DB_CONNECTION", prod_address.replace("127.0.0.1", "localhost"))
    monkeypatch.setenv("DEV_DB_USER", cluster.accounts["prod"].user)
    monkeypatch.setenv("DEV_DB_PASSWORD", cluster.accounts["prod"].password)
    result = run(definitions(), instance, "2026-11-06")
    message = failure_messages(result)["dev_db"]
    print(f"\nrefused prod target: {message}")
    assert "dev: the target localhost:" in message and "is the production database" in message
    assert "refused before connecting" in message
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)
    assert cluster.fingerprints("prod") == prod_before and cluster.fingerprints("dev") == dev_before


def test_a_full_disk_fails_once_with_a_true_message(cluster, tmp_path, instance, monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / f"tiny-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        for key, value in cluster.env_vars().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("SNAPSHOT_DIR", str(mount))
        result = run(definitions(), instance, "2026-11-07")
        message = failure_messages(result)["prod_snapshot"]
        print(f"\nfull disk: {message}")
        assert "Not enough space for the snapshot in" in message and "MiB is free" in message
        assert "will be retried" not in message and "no retry is scheduled" in message
        assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)
        assert list(mount.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mount)], check=False)
