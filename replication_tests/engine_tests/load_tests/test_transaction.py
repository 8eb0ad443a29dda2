import threading
import time

import psycopg
import pytest

from replication.engine.verify.checksum import MD5_TEXT, content_checksum
from replication.engine.errors import (
    LoadVerificationError,
    SchemaMismatchError,
    SnapshotCorruptError,
    SnapshotIncompleteError,
)
from replication.engine.snapshot.manifest import read_manifest, write_manifest
from replication.engine.snapshot.verify import verify_snapshot

from ...helpers import load, role_connection, snapshot


@pytest.fixture(scope="module")
def snap(cluster, tmp_path_factory):
    directory = tmp_path_factory.mktemp("snap") / "prod_snapshot_20261125"
    snapshot(cluster, directory)
    return directory


def test_load_makes_the_environment_equal_prod(cluster, snap):
    report = load(cluster, "dev", snap)
    assert cluster.fingerprints("dev") == cluster.fingerprints("prod")
    assert all(t.checksum_verified for t in report.tables)
    assert report.total_rows == verify_snapshot(snap).total_rows
    with cluster.connect("dev") as conn, cluster.connect("prod") as prod:
        # Sequences continue after the loaded rows: the app can insert without key clashes.
        new_id = conn.execute(
            "INSERT INTO shop.customers (public_id, email, full_name, created_at) "
            "VALUES (gen_random_uuid(), 'n@e.w', 'New', now()) RETURNING id").fetchone()[0]
        assert new_id > prod.execute("SELECT max(id) FROM shop.customers").fetchone()[0]
        conn.execute("DELETE FROM shop.customers WHERE id = %s", (new_id,))


def test_slow_path_with_indexes_in_place_gives_the_same_copy(cluster, snap):
    slow = load(cluster, "qa", snap, rebuild_indexes=False)
    assert slow.indexes_rebuilt == 0 and cluster.fingerprints("qa") == cluster.fingerprints("prod")
    fast = load(cluster, "qa", snap)
    assert fast.indexes_rebuilt >= 8 and fast.foreign_keys_readded == 4
    assert cluster.fingerprints("qa") == cluster.fingerprints("prod")


def test_constraint_violation_in_a_later_table_rolls_everything_back(cluster, snap):
    load(cluster, "staging", snap)
    before = cluster.fingerprints("staging")
    changed = snap.parent / "changed"
    with cluster.altered("prod", "UPDATE shop.products SET name = name || ' (changed)' WHERE id <= 10",
                         "UPDATE shop.products SET name = replace(name, ' (changed)', '') WHERE id <= 10"):
        snapshot(cluster, changed)
    # Staging's own rule that some production rows break; order_items loads after three tables.
    with cluster.altered("staging", "ALTER TABLE shop.order_items ADD CONSTRAINT small_orders CHECK (quantity < 4) NOT VALID",
                         "ALTER TABLE shop.order_items DROP CONSTRAINT small_orders"):
        with pytest.raises(psycopg.errors.CheckViolation, match="small_orders"):
            load(cluster, "staging", changed)
    assert cluster.fingerprints("staging") == before


def test_connection_killed_mid_copy_leaves_the_environment_as_it_was(cluster, snap):
    load(cluster, "qa", snap)
    before = cluster.fingerprints("qa")
    killed = []

    def kill_during_orders_copy():
        with cluster.connect("qa") as admin:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not killed:
                row = admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = 'qa' AND query LIKE 'COPY \"shop\".\"orders\"%%'"
                ).fetchone()
                if row:
                    time.sleep(0.3)
                    admin.execute("SELECT pg_terminate_backend(%s)", row)
                    killed.append(row[0])
                time.sleep(0.02)

    # Slow the third table's COPY down so it can be caught in the act.
    slow_orders = """
        CREATE FUNCTION shop.slow_row() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN PERFORM pg_sleep(0.002); RETURN NEW; END $$;
        CREATE TRIGGER slow BEFORE INSERT ON shop.orders FOR EACH ROW EXECUTE FUNCTION shop.slow_row();
    """
    with cluster.altered("qa", slow_orders, "DROP TRIGGER slow ON shop.orders; DROP FUNCTION shop.slow_row()"):
        killer = threading.Thread(target=kill_during_orders_copy)
        killer.start()
        try:
            with pytest.raises(psycopg.OperationalError):
                load(cluster, "qa", snap)
        finally:
            killer.join()
    assert killed
    assert cluster.fingerprints("qa") == before


def test_missing_target_table_is_named_before_any_write(cluster, snap):
    load(cluster, "dev", snap)
    before = cluster.fingerprints("dev")
    with cluster.altered("dev", 'ALTER TABLE "Ops"."Audit Log" RENAME TO "Old Audit"',
                         'ALTER TABLE "Ops"."Old Audit" RENAME TO "Audit Log"'):
        with pytest.raises(SchemaMismatchError, match=r"dev: table Ops.Audit Log does not exist"):
            load(cluster, "dev", snap)
    assert cluster.fingerprints("dev") == before


def test_missing_target_column_is_named_before_any_write(cluster, snap):
    load(cluster, "dev", snap)
    with cluster.altered("dev", "ALTER TABLE shop.products RENAME COLUMN rating TO stars",
                         "ALTER TABLE shop.products RENAME COLUMN stars TO rating"):
        before = cluster.fingerprints("dev")
        with pytest.raises(SchemaMismatchError, match=r"dev: column 'rating' of table shop.products does not exist"):
            load(cluster, "dev", snap)
        assert cluster.fingerprints("dev") == before


def test_extra_nullable_or_defaulted_target_columns_are_fine(cluster, snap):
    with cluster.altered("dev", "ALTER TABLE shop.customers ADD COLUMN dev_note text, ADD COLUMN dev_flag boolean NOT NULL DEFAULT false",
                         "ALTER TABLE shop.customers DROP COLUMN dev_note, DROP COLUMN dev_flag"):
        load(cluster, "dev", snap)
        with cluster.connect("dev") as conn:
            assert conn.execute("SELECT count(*) FROM shop.customers WHERE dev_flag = false AND dev_note IS NULL").fetchone()[0] \
                == verify_snapshot(snap).table("shop.customers").rows


def test_extra_not_null_target_column_without_default_is_refused(cluster, snap):
    add_owner = ("ALTER TABLE shop.products ADD COLUMN owner text; UPDATE shop.products SET owner = 'x'; "
                 "ALTER TABLE shop.products ALTER COLUMN owner SET NOT NULL")
    with cluster.altered("dev", add_owner, "ALTER TABLE shop.products DROP COLUMN owner"):
        with pytest.raises(SchemaMismatchError, match=r"column 'owner' of table shop.products is NOT NULL"):
            load(cluster, "dev", snap)


def test_altered_snapshot_file_is_refused(cluster, snap, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(snap, copy)
    path = copy / "shop.products.csv"
    data = bytearray(path.read_bytes())
    data[-5] = ord("9") if data[-5] != ord("9") else ord("8")
    path.write_bytes(bytes(data))
    with pytest.raises(SnapshotCorruptError, match=r"shop.products.csv for table shop.products was changed after capture"):
        verify_snapshot(copy)


def test_snapshot_checksummed_the_first_way_still_verifies(cluster, snap, tmp_path):
    """Retained snapshots from before the hash change carry md5 checksums; loads still check them."""
    import shutil

    copy = tmp_path / "md5"
    shutil.copytree(snap, copy)
    manifest = read_manifest(copy)
    with role_connection(cluster, "prod") as prod:
        for entry in manifest.tables:
            entry.content_checksum = content_checksum(prod, entry.ref, entry.column_names, algorithm=MD5_TEXT)[1]
    write_manifest(copy, manifest)
    report = load(cluster, "staging", copy)
    assert all(t.checksum_verified for t in report.tables)
    assert cluster.fingerprints("staging") == cluster.fingerprints("prod")
    manifest.table("shop.products").content_checksum = "13333:12345"
    write_manifest(copy, manifest)
    with pytest.raises(LoadVerificationError, match="table shop.products differs from production"):
        load(cluster, "staging", copy)


def test_snapshot_without_manifest_is_never_loaded(cluster, snap, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(snap, copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(SnapshotIncompleteError, match="has no manifest.json"):
        verify_snapshot(copy)


def test_loader_role_cannot_read_prod(cluster):
    """The demo's least-privilege layout: an environment's role has no access to production."""
    with pytest.raises(psycopg.OperationalError):
        account = cluster.accounts["dev"]
        psycopg.connect(host=cluster.source.host, port=cluster.source.port, dbname="prod",
                        user=account.user, password=account.password).close()
    with role_connection(cluster, "prod") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM shop.products")


def test_small_tables_keep_their_indexes_during_the_load_and_the_copy_is_the_same(cluster, snap):
    """Below rebuild_min_rows a table is indexed row by row: a thousand small tables' DDL costs more."""
    definitions = "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index ORDER BY 1"
    with cluster.connect("staging") as conn:
        before = conn.execute(definitions).fetchall()
    report = load(cluster, "staging", snap, rebuild_min_rows=1000)
    small = {t.key for t in verify_snapshot(snap).tables if t.rows < 1000}
    rebuilt = {t.key for t in report.tables if t.rebuild_seconds > 0}
    print(f"\nkept their indexes: {sorted(small)}; rebuilt: {sorted(rebuilt)}")
    assert small == {"shop.products", "Ops.Audit Log"} and not small & rebuilt
    assert {"shop.customers", "shop.order_items", "shop.orders"} <= rebuilt
    assert report.foreign_keys_readded == 4  # foreign keys come off all the same
    assert cluster.fingerprints("staging") == cluster.fingerprints("prod")
    with cluster.connect("staging") as conn:
        assert conn.execute(definitions).fetchall() == before
