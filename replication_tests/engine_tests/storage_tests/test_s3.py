"""Snapshots in an S3-compatible store (moto's server, over HTTP): round trips, damage, keys, endpoints, leases."""

import os
import threading
import time

import botocore.exceptions
import pytest
from pyrage import x25519

from replication.engine.errors import SnapshotCorruptError, SnapshotIncompleteError, SnapshotKeyError, \
    StoreAccessError, StoreUnreachableError
from replication.engine.snapshot.retention import prune
from replication.engine.storage import Encoding, SnapshotLocation, snapshot_name
from replication.engine.storage.s3 import S3Store
from replication.engine.snapshot.verify import verify_snapshot

from ...conftest import free_port
from ...helpers import PARTITION, load, role_connection, snapshot


@pytest.fixture(scope="module")
def keys():
    identity = x25519.Identity.generate()
    return identity, str(identity.to_public())


@pytest.fixture
def store(s3_server):
    return S3Store(f"s3://{s3_server.new_bucket()}/daily/snapshots", endpoint_url=s3_server.endpoint_url)


def location(store, keys, partition=PARTITION, with_identity=True):
    identity, recipient = keys
    return SnapshotLocation(store, snapshot_name(partition), Encoding("zstd", 3, (recipient,)),
                            [identity] if with_identity else [])


def test_capture_and_load_through_the_store_compressed_and_encrypted(cluster, store, keys, s3_server):
    snap = location(store, keys)
    manifest = snapshot(cluster, snap, include=["shop.*"])
    listed = s3_server.client().list_objects_v2(Bucket=store.bucket, Prefix="daily/snapshots/")["Contents"]
    names = sorted(item["Key"] for item in listed)
    assert "daily/snapshots/prod_snapshot_20261125/manifest.json" in names
    assert "daily/snapshots/prod_snapshot_20261125/shop.customers.csv.zst.age" in names
    assert not any(".leases/" in n for n in names)  # the capture's lease is gone with it
    for entry in manifest.tables:
        assert (entry.compression, entry.encryption) == ("zstd", "age")
    ratio = manifest.stored_bytes / manifest.total_bytes
    print(f"stored {manifest.stored_bytes:,} of {manifest.total_bytes:,} CSV bytes ({ratio:.2f})")
    assert ratio < 0.5
    verify_snapshot(snap)
    before = cluster.fingerprints("prod")
    load(cluster, "dev", snap)
    dev = cluster.fingerprints("dev")
    assert {k: v for k, v in dev.items() if k.startswith("shop.")} == {k: v for k, v in before.items()
                                                                        if k.startswith("shop.")}


def test_a_tampered_object_fails_before_the_target_is_touched(cluster, store, keys, s3_server):
    snap = location(store, keys)
    manifest = snapshot(cluster, snap, include=["shop.products", "shop.customers"])
    load(cluster, "dev", snap)
    before = cluster.fingerprints("dev")
    entry = manifest.table("shop.customers")
    key = f"daily/snapshots/{snap.name}/{entry.file}"
    client = s3_server.client()
    data = bytearray(client.get_object(Bucket=store.bucket, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0x01  # same size: only the sha256 (or age's MAC) can tell
    client.put_object(Bucket=store.bucket, Key=key, Body=bytes(data))
    with pytest.raises(SnapshotCorruptError, match="shop.customers.csv.zst.age for table shop.customers was "
                                                   "changed after capture") as caught:
        load(cluster, "dev", snap)
    assert "refresh: true" in str(caught.value)
    assert cluster.fingerprints("dev") == before
    # Even past the check before connecting, the load reads through sha256 and rolls back.
    from replication.engine.load import load_snapshot
    with role_connection(cluster, "dev") as conn, pytest.raises(SnapshotCorruptError):
        load_snapshot(conn, snap, manifest, environment="dev")
    assert cluster.fingerprints("dev") == before


def test_a_missing_identity_is_refused_before_anything_is_written(cluster, store, keys):
    snap = location(store, keys)
    manifest = snapshot(cluster, snap, include=["shop.products"])
    before = cluster.fingerprints("dev")
    from replication.engine.load import load_snapshot
    with role_connection(cluster, "dev") as conn, pytest.raises(SnapshotKeyError) as caught:
        load_snapshot(conn, location(store, keys, with_identity=False), manifest, environment="dev")
    assert "SNAPSHOT_AGE_IDENTITY is not set" in str(caught.value) and "nothing was written" in str(caught.value)
    wrong = SnapshotLocation(store, snap.name, identities=[x25519.Identity.generate()])
    with role_connection(cluster, "dev") as conn, pytest.raises(SnapshotKeyError, match="does not open this snapshot"):
        load_snapshot(conn, wrong, manifest, environment="dev")
    assert cluster.fingerprints("dev") == before


def test_a_wrong_endpoint_or_bucket_says_which_setting_to_fix(s3_server, keys):
    nowhere = S3Store("s3://replication-nowhere/x", endpoint_url=f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(StoreUnreachableError) as caught:
        verify_snapshot(location(nowhere, keys))
    message = str(caught.value)
    print(message, f"({time.monotonic() - started:.1f} s)")
    assert "did not answer at http://127.0.0.1:" in message and "snapshot.s3.endpoint_url" in message
    missing = S3Store("s3://no-such-bucket-here/x", endpoint_url=s3_server.endpoint_url)
    with pytest.raises(StoreAccessError, match="does not exist: create it, or fix snapshot.store"):
        location(missing, keys).write_manifest_bytes(b"{}")


def test_retention_never_deletes_a_snapshot_a_load_is_reading(cluster, store, keys):
    old = location(store, keys, "2026-11-24")
    snapshot(cluster, old, include=["shop.products", "shop.customers"])
    new = location(store, keys, "2026-11-25")
    snapshot(cluster, new, include=["shop.products", "shop.customers"])

    # A load of the old day, held up by an analyst's open transaction on Dev, while retention runs.
    blocker = cluster.connect("dev")
    blocker.autocommit = False
    blocker.execute("LOCK TABLE shop.customers IN ACCESS SHARE MODE")
    reading = threading.Event()
    outcome: list = []

    def restore_old_day() -> None:
        try:
            with old.lease(exclusive=False):
                reading.set()
                outcome.append(load(cluster, "dev", old))
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome.append(exc)

    thread = threading.Thread(target=restore_old_day)
    thread.start()
    assert reading.wait(30)
    time.sleep(1.0)
    during = prune(store, keep=1, protect=[new.name])
    assert during.in_use == [old.name] and during.deleted == []
    blocker.rollback()
    blocker.close()
    thread.join(120)
    assert not isinstance(outcome[0], BaseException), outcome[0]
    after = prune(store, keep=1, protect=[new.name])
    assert after.deleted == [old.name] and after.freed_bytes > 0
    assert store.files(old.name) == {} and store.files(new.name)
    with pytest.raises(SnapshotIncompleteError, match="materialize prod_snapshot for this partition first"):
        verify_snapshot(old)


def test_a_reader_does_not_start_on_a_snapshot_being_deleted(cluster, store, keys):
    snap = location(store, keys, "2026-11-23")
    snapshot(cluster, snap, include=["shop.products"])
    store.put(snap.name, ".deleting", b"")  # retention has put its tombstone and is looking for leases
    with pytest.raises(SnapshotIncompleteError, match="being deleted by retention"):
        with snap.lease(exclusive=False):
            pass
    assert not [f for f in store._objects(snap.name) if f.startswith(".leases/")]  # the reader's lease is gone


def test_leases_are_renewed_while_held_and_expire_when_their_step_dies(cluster, s3_server, keys):
    quick = S3Store(f"s3://{s3_server.new_bucket()}/s", endpoint_url=s3_server.endpoint_url,
                    lease_seconds=1.5, renew_seconds=0.3)
    snap = location(quick, keys, "2026-11-22")
    manifest = snapshot(cluster, snap, include=["shop.products"])
    # A newer day, so that keep: 1 leaves 2026-11-22 to retention.
    manifest.captured_at = "2099-12-31T00:00:00+00:00"
    quick.put("prod_snapshot_20991231", "manifest.json", manifest.to_json().encode())
    with snap.lease(exclusive=False):
        time.sleep(3.0)  # twice the lease's life: only renewal keeps it
        assert prune(quick, keep=1).in_use == [snap.name]
    quick.put(snap.name, ".leases/crashed-step", b"shared")  # a step killed without deleting its lease
    assert prune(quick, keep=1).in_use == [snap.name]
    time.sleep(2.0)
    assert prune(quick, keep=1).deleted == [snap.name]


def test_a_large_object_goes_up_in_parts_and_comes_back_whole(store, s3_server):
    """Objects over one part (16 MiB) stream as a multipart upload: the writer holds one part."""
    import hashlib
    import os

    from replication.engine.storage.s3 import PART_BYTES

    writer = store.writer("prod_snapshot_20261101", "big.bin")
    digest, size = hashlib.sha256(), 0
    block = os.urandom(1 << 20)
    for _ in range(2 * PART_BYTES // len(block) + 3):  # two full parts and a short last one
        writer.write(block)
        digest.update(block)
        size += len(block)
    stored = writer.commit()
    assert (stored.size, stored.sha256) == (size, digest.hexdigest())
    head = s3_server.client().head_object(Bucket=store.bucket, Key="daily/snapshots/prod_snapshot_20261101/big.bin")
    assert head["ContentLength"] == size and head["ETag"].endswith('-3"')  # three parts
    back = hashlib.sha256()
    for chunk in store.read("prod_snapshot_20261101", "big.bin"):
        back.update(chunk)
    assert back.hexdigest() == stored.sha256
    aborted = store.writer("prod_snapshot_20261101", "never.bin")
    aborted.write(block * 17)
    aborted.abort()
    assert "never.bin" not in store.files("prod_snapshot_20261101")
    assert not s3_server.client().list_multipart_uploads(Bucket=store.bucket).get("Uploads")


def test_a_store_stricter_than_moto_gets_no_checksum_header_and_content_md5_on_deletes(s3_server):
    """Writes (one part and many), reads, listing, leases and retention's deletes through a proxy that
    refuses what B2, R2 and older MinIO refuse; boto3's defaults are refused there, as on those stores."""
    from ...strict_s3 import StrictS3Proxy
    from replication.engine.storage import s3 as s3_module

    proxy = StrictS3Proxy(s3_server.endpoint_url, free_port()).start()
    try:
        bucket = s3_server.new_bucket()
        strict = S3Store(f"s3://{bucket}/s", endpoint_url=proxy.endpoint_url)
        assert strict.checksums == "when_required"
        for name, size in (("small.csv", 1000), ("large.csv", s3_module.PART_BYTES + 1000)):
            writer = strict.writer("prod_snapshot_20261125", name)
            writer.write(os.urandom(size))
            written = writer.commit()
            assert sum(len(c) for c in strict.read("prod_snapshot_20261125", name)) == written.size == size
        strict.put("prod_snapshot_20261125", "manifest.json", b"{}")
        with strict.lease("prod_snapshot_20261125", exclusive=False):
            assert strict.remove_if_unused("prod_snapshot_20261125") is None
        assert strict.remove_if_unused("prod_snapshot_20261125") > s3_module.PART_BYTES
        assert strict.snapshots() == [] and proxy.refused == []

        defaults = S3Store(f"s3://{bucket}/s", endpoint_url=proxy.endpoint_url, checksums="when_supported")
        with pytest.raises(botocore.exceptions.ClientError, match="x-amz-checksum"):
            defaults.put("prod_snapshot_20261125", "manifest.json", b"{}")
        print(f"\nrefused with boto3's defaults: {proxy.refused}")
    finally:
        proxy.stop()
    # AWS itself keeps AWS's defaults.
    assert S3Store("s3://replication-aws/x", region="us-east-1").checksums == "when_supported"
