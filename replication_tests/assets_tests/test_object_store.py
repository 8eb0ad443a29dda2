"""Whole partitions through Dagster with the snapshot in an S3-compatible store, compressed and encrypted."""

import dagster as dg
import pytest
from pyrage import x25519

from replication.config import parse_config
from replication.definitions import build_definitions

from ..conftest import ENVIRONMENTS, free_port
from ..helpers import JOB
from .test_replication_run import failure_messages, materializations
from .test_unattended import check_results


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def keys(monkeypatch):
    identity = x25519.Identity.generate()
    monkeypatch.setenv("SNAPSHOT_AGE_IDENTITY", str(identity))
    return identity, str(identity.to_public())


def s3_config(s3_server, bucket: str, recipient: str, **snapshot) -> dict:
    return {"snapshot": {"store": f"s3://{bucket}/replication", "s3": {"endpoint_url": s3_server.endpoint_url},
                         "compression": "zstd", "encrypt_to": [recipient], **snapshot},
            "environments": {env: {} for env in ENVIRONMENTS}}


def run(config: dict, instance, partition: str, assets=None):
    defs = build_definitions(parse_config(config))
    return defs.resolve_job_def(JOB).execute_in_process(
        partition_key=partition, instance=instance, raise_on_error=False,
        asset_selection=[dg.AssetKey(a) for a in assets] if assets else None)


def test_a_daily_run_through_the_store_equals_prod_with_every_check_green(cluster, replication_env, instance, keys,
                                                                         s3_server, monkeypatch):
    bucket = s3_server.new_bucket()
    config = s3_config(s3_server, bucket, keys[1], keep=2)
    first = run(config, instance, "2026-11-24")
    assert first.success, failure_messages(first)
    prod = cluster.fingerprints("prod")
    for env in ENVIRONMENTS:
        assert cluster.fingerprints(env) == prod, env
    results = check_results(first)
    assert results and all(results.values()), results
    snap = materializations(first)["prod_snapshot"]
    assert snap["snapshot_path"].value == f"s3://{bucket}/replication/prod_snapshot_20261124"
    assert (snap["compression"].value, snap["encryption"].value) == ("zstd", "age")
    ratio = snap["stored_bytes"].value / snap["total_bytes"].value
    print(f"stored/CSV bytes: {ratio:.2f}; checks: {len(results)} passed")
    assert ratio < 0.5
    assert list(replication_env.iterdir()) == []  # nothing on the local disk
    keys_in_bucket = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert all(k.endswith((".csv.zst.age", "schema.sql.zst.age", "manifest.json")) for k in keys_in_bucket), keys_in_bucket

    # The next day, then a restore of the first: its stored snapshot is reused, production not read.
    assert run(config, instance, "2026-11-25").success
    with cluster.altered("dev", "DELETE FROM shop.order_items WHERE id % 2 = 0", "SELECT 1"):
        monkeypatch.setenv("PROD_DB_CONNECTION", f"127.0.0.1:{free_port()}/prod")
        restored = run(config, instance, "2026-11-24")
        assert restored.success and materializations(restored)["prod_snapshot"]["reused"].value is True
        assert cluster.fingerprints("dev") == prod
        monkeypatch.setenv("PROD_DB_CONNECTION", cluster.env_vars()["PROD_DB_CONNECTION"])

    # A third day: keep: 2, so the loads' retention deletes the oldest capture once they committed.
    third = run(config, instance, "2026-11-26")
    assert third.success, failure_messages(third)
    deleted = {m["snapshots_deleted"].value[0] for k, m in materializations(third).items()
               if k != "prod_snapshot" and m["snapshots_deleted"].value}
    assert deleted == {"prod_snapshot_20261124"}
    # Restoring the deleted day is refused (backfill_missing: refuse), and says why.
    config["snapshot"]["backfill_missing"] = "refuse"
    restore = run(config, instance, "2026-11-24")
    assert "No retained snapshot of 2026-11-24" in failure_messages(restore)["prod_snapshot"]


def test_a_load_without_the_identity_fails_at_once_and_names_the_variable(cluster, replication_env, instance, keys,
                                                                       s3_server, monkeypatch):
    config = s3_config(s3_server, s3_server.new_bucket(), keys[1])
    assert run(config, instance, "2026-11-20", ["prod_snapshot"]).success
    monkeypatch.delenv("SNAPSHOT_AGE_IDENTITY")
    before = cluster.fingerprints("dev")
    result = run(config, instance, "2026-11-20", ["dev_db"])
    message = failure_messages(result)["dev_db"]
    print(message)
    assert "encrypted (age) and SNAPSHOT_AGE_IDENTITY is not set" in message and "Retrying" not in message
    assert len(result.get_step_failure_events()) == 1  # permanent: no retry scheduled
    assert cluster.fingerprints("dev") == before
    monkeypatch.setenv("SNAPSHOT_AGE_IDENTITY", "AGE-SECRET-KEY-1NOTAKEY")
    message = failure_messages(run(config, instance, "2026-11-20", ["dev_db"]))["dev_db"]
    assert "SNAPSHOT_AGE_IDENTITY does not hold an age identity" in message and "NOTAKEY" not in message


def test_a_wrong_endpoint_names_the_setting(cluster, replication_env, instance, keys, s3_server):
    config = s3_config(s3_server, "replication-unreachable", keys[1])
    config["snapshot"]["s3"]["endpoint_url"] = f"http://127.0.0.1:{free_port()}"
    result = run(config, instance, "2026-11-20", ["prod_snapshot"])
    message = failure_messages(result)["prod_snapshot"]
    print(message)
    assert "did not answer at http://127.0.0.1:" in message and "snapshot.s3.endpoint_url" in message


@pytest.fixture
def strict_store(s3_server):
    """moto behind a proxy that refuses what B2, R2 and older MinIO refuse (replication_tests/strict_s3.py)."""
    from ..strict_s3 import StrictS3Proxy

    proxy = StrictS3Proxy(s3_server.endpoint_url, free_port()).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def test_a_whole_run_and_retention_pass_through_a_store_that_refuses_checksum_headers(
        cluster, replication_env, instance, keys, s3_server, strict_store):
    bucket = s3_server.new_bucket()
    config = s3_config(s3_server, bucket, keys[1], keep=1)
    config["snapshot"]["s3"]["endpoint_url"] = strict_store.endpoint_url  # checksums: auto
    for day in ("2026-11-27", "2026-11-28"):
        result = run(config, instance, day)
        assert result.success, failure_messages(result)
        results = check_results(result)
        assert results and all(results.values()), results
    prod = cluster.fingerprints("prod")
    for env in ENVIRONMENTS:
        assert cluster.fingerprints(env) == prod, env
    # keep: 1, so the second day's loads deleted the first day's snapshot, through DeleteObjects.
    deleted = {m["snapshots_deleted"].value[0] for k, m in materializations(result).items()
               if k != "prod_snapshot" and m["snapshots_deleted"].value}
    assert deleted == {"prod_snapshot_20261127"}
    names = {o["Key"].split("/")[1] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]}
    assert names == {"prod_snapshot_20261128"}
    print(f"requests through the strict endpoint: {strict_store.forwarded}, refused: {len(strict_store.refused)}")
    assert strict_store.refused == [] and strict_store.forwarded > 50

    # boto3's own defaults, asked for explicitly: the store refuses them, and the message says what to set.
    config["snapshot"]["s3"]["checksums"] = "when_supported"
    refused = run(config, instance, "2026-11-29", ["prod_snapshot"])
    message = failure_messages(refused)["prod_snapshot"]
    print(message)
    assert strict_store.refused and "snapshot.s3.checksums: when_required" in message
    assert len(refused.get_step_failure_events()) == 1  # permanent: no retry scheduled
