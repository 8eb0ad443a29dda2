import stat
import threading

import pytest

from replication.engine.storage.files import sha256_of
from replication.engine.snapshot.manifest import read_manifest

from ...helpers import role_connection, snapshot


def test_files_are_private_and_manifest_describes_them(cluster, tmp_path):
    directory = tmp_path / "prod_snapshot_20261125"
    manifest = snapshot(cluster, directory)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = sorted(p.name for p in directory.iterdir())
    # Every table's object, production's definitions (pg_dump --schema-only) and the manifest.
    assert files == sorted([t.file for t in manifest.tables] + ["schema.sql", "manifest.json"])
    assert (manifest.schema_dump.sha256, manifest.schema_dump.bytes) == sha256_of(directory / "schema.sql")
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    on_disk = read_manifest(directory)
    assert on_disk == manifest
    assert on_disk.partition == "2026-11-25" and on_disk.server_version and on_disk.captured_at
    customers = manifest.table("shop.customers")
    # The generated column is left to the target; everything else is captured with its type.
    assert "name_lower" not in customers.column_names
    assert {"id": "bigint", "email": "shop.email_address", "tags": "text[]"}.items() <= {
        c.name: c.type for c in customers.columns}.items()
    for entry in manifest.tables:
        assert (entry.sha256, entry.bytes) == sha256_of(directory / entry.file)
    with cluster.connect("prod") as conn:
        for entry in manifest.tables:
            assert entry.rows == conn.execute(f"SELECT count(*) FROM {entry.ref.ident.as_string(conn)}").fetchone()[0]
    assert [s.column for s in customers.sequences] == ["id"]
    assert customers.sequences[0].last_value >= customers.rows


def test_csv_header_and_quoting(cluster, tmp_path):
    manifest = snapshot(cluster, tmp_path / "s", include=["customers"])
    text = (tmp_path / "s" / manifest.tables[0].file).read_text(encoding="utf-8")
    header = text.splitlines()[0]
    assert header.startswith("id,public_id,email,full_name,Display Name,note")
    assert '"Ada, ""The Countess"" Lovelace"' in text
    assert "🚀" in text and "日本語" in text


def test_all_tables_come_from_one_point_in_time(cluster, tmp_path):
    """Rows committed on prod while the snapshot runs appear in no table of it."""
    inserted = threading.Event()

    def insert_during_snapshot():
        with cluster.connect("prod") as admin:
            # Wait until the snapshot's transaction is running, then commit new rows in two tables.
            for _ in range(200):
                busy = admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'replication' AND query LIKE 'COPY%%'"
                ).fetchone()[0]
                if busy:
                    break
                threading.Event().wait(0.02)
            admin.execute("INSERT INTO \"Ops\".\"Audit Log\" (\"Event Type\", happened_at) VALUES ('during', now())")
            admin.execute(
                "INSERT INTO shop.products (sku, name, price, added_on) VALUES ('SKU-DURING', 'x', 1, now())"
            )
            inserted.set()

    with cluster.connect("prod") as admin:
        before = {t: admin.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ('"Ops"."Audit Log"', "shop.products")}
    worker = threading.Thread(target=insert_during_snapshot)
    worker.start()
    try:
        manifest = snapshot(cluster, tmp_path / "s", include=["Ops.*", "shop.customers", "shop.products"])
    finally:
        worker.join()
        with cluster.connect("prod") as admin:
            admin.execute("DELETE FROM \"Ops\".\"Audit Log\" WHERE \"Event Type\" = 'during'")
            admin.execute("DELETE FROM shop.products WHERE sku = 'SKU-DURING'")
    assert inserted.is_set()
    # Either both inserts are in (committed before the snapshot began) or neither is.
    captured = (manifest.table("Ops.Audit Log").rows - before['"Ops"."Audit Log"'],
                manifest.table("shop.products").rows - before["shop.products"])
    assert captured in {(0, 0), (1, 1)}


def test_rerun_removes_files_of_tables_no_longer_selected(cluster, tmp_path):
    directory = tmp_path / "s"
    snapshot(cluster, directory)
    (directory / ".shop.orders.csv.partial").write_text("left by a crash")
    manifest = snapshot(cluster, directory, include=["shop.products"])
    assert sorted(p.name for p in directory.iterdir()) == ["manifest.json", "schema.sql", "shop.products.csv"]
    assert [t.key for t in manifest.tables] == ["shop.products"]


def test_row_level_security_that_hides_rows_is_refused_not_copied_short(cluster, tmp_path):
    from replication.engine.errors import HiddenRowsError

    policy = ("ALTER TABLE shop.products ENABLE ROW LEVEL SECURITY; "
              "CREATE POLICY only_cheap ON shop.products FOR SELECT USING (price < 100)")
    undo = "DROP POLICY only_cheap ON shop.products; ALTER TABLE shop.products DISABLE ROW LEVEL SECURITY"
    with cluster.altered("prod", policy, undo):
        with pytest.raises(HiddenRowsError, match="shop.products has row-level security policies") as caught:
            snapshot(cluster, tmp_path / "rls", include=["shop.products"])
    assert "ALTER ROLE prod_reader BYPASSRLS" in str(caught.value)


def test_inheritance_children_rows_are_not_copied_into_the_parent(cluster, tmp_path):
    child = ("CREATE TABLE shop.products_archive (archived_on date) INHERITS (shop.products); "
             "GRANT SELECT ON shop.products_archive TO prod_reader; "
             "INSERT INTO shop.products_archive (id, sku, name, price, added_on, archived_on) "
             "VALUES (999999, 'OLD-1', 'old', 1, '2020-01-01', '2021-01-01')")
    with cluster.altered("prod", child, "DROP TABLE shop.products_archive"):
        manifest = snapshot(cluster, tmp_path / "inherit", include=["shop.products", "shop.products_archive"])
        with cluster.connect("prod") as conn:
            own_rows = conn.execute("SELECT count(*) FROM ONLY shop.products").fetchone()[0]
    assert manifest.table("shop.products").rows == own_rows
    assert manifest.table("shop.products_archive").rows == 1


def comparable(manifest):
    """What two captures of the same data share: everything but timings and capture time."""
    return [(t.key, t.rows, t.bytes, t.sha256, t.content_checksum) for t in manifest.tables]


def test_parallel_capture_reads_one_snapshot_across_its_connections(cluster, tmp_path):
    """Helpers join the first connection's snapshot: a change committed after it began is in no file."""
    alone = snapshot(cluster, tmp_path / "alone")
    opened = []

    def connect():
        opened.append(1)
        return role_connection(cluster, "prod")

    def commit_a_change_meanwhile(_bytes):
        with cluster.connect("prod") as conn:
            conn.execute("UPDATE shop.products SET name = name || ' (later)'")
            conn.execute("UPDATE shop.order_items SET quantity = quantity + 1")
            conn.execute("UPDATE \"Ops\".\"Audit Log\" SET \"Event Type\" = \"Event Type\" || ' (later)'")

    undo = ("UPDATE shop.products SET name = replace(name, ' (later)', ''); "
            "UPDATE shop.order_items SET quantity = quantity - 1; "
            "UPDATE \"Ops\".\"Audit Log\" SET \"Event Type\" = replace(\"Event Type\", ' (later)', '')")
    with cluster.altered("prod", "SELECT 1", undo):
        together = snapshot(cluster, tmp_path / "together", connect=connect, jobs=4,
                            before_writing=commit_a_change_meanwhile)
        after = snapshot(cluster, tmp_path / "after", connect=connect, jobs=4)
    assert len(opened) == 6  # three helpers per capture
    assert [t.key for t in together.tables] == [t.key for t in alone.tables]  # the selection's order
    assert comparable(together) == comparable(alone)
    changed = {a[0] for a, b in zip(comparable(after), comparable(alone)) if a != b}
    assert changed == {"shop.products", "shop.order_items", "Ops.Audit Log"}


def test_a_helper_that_cannot_connect_leaves_its_share_to_the_others(cluster, tmp_path):
    import psycopg

    alone = snapshot(cluster, tmp_path / "alone")
    lines = []

    def refused():
        raise psycopg.OperationalError("FATAL: sorry, too many clients already")

    manifest = snapshot(cluster, tmp_path / "short", connect=refused, jobs=3, log=lines.append)
    assert comparable(manifest) == comparable(alone)
    assert sum("helper connection" in line and "too many clients" in line for line in lines) == 2
