"""A table larger than snapshot.split_larger_than: captured in parts by ctid ranges from the one
exported snapshot, loaded in parts by several connections, and the same table either way."""

from __future__ import annotations

from contextlib import contextmanager

from replication.engine.load import load_snapshot
from replication.engine.load.swap import swap_snapshot
from replication.engine.pg.connection import connect, parse_address
from replication.engine.pg.session import libpq_options
from replication.engine.snapshot.manifest import read_manifest
from replication.engine.snapshot.verify import verify_snapshot
from replication.engine.verify.audit import unchanged_since_load
from replication_tests.conftest import table_fingerprints
from replication_tests.engine_tests.load_tests.swap_support import create_swap_databases


def _app_tables(server, database):
    with server.connect(database, options=libpq_options()) as conn:
        return {k: v for k, v in table_fingerprints(conn).items() if k.startswith("app.")}


def _visible_pages(dbs) -> tuple[int, int]:
    """app.orders' pages and how many of them are all-visible, as the swap's ANALYZE counted them."""
    with dbs.admin() as conn:
        return conn.execute("SELECT relpages, relallvisible FROM pg_catalog.pg_class "
                            "WHERE oid = 'app.orders'::pg_catalog.regclass").fetchone()


def test_a_large_table_is_captured_in_parts_and_loads_whole_both_ways(cluster, tmp_path):
    dbs = create_swap_databases(cluster.source, cluster.targets, "split", customers=5000, orders=200000)
    prod = _app_tables(dbs.source, dbs.prod)

    @contextmanager
    def production():
        conn = connect(parse_address(dbs.source.address(dbs.prod), "PROD"), "postgres", dbs.source.password)
        try:
            yield conn
        finally:
            conn.close()

    snapshot = tmp_path / "snap"
    manifest = dbs.snapshot(snapshot, connect=production, jobs=2, split_bytes=1 << 20)
    orders = manifest.table("app.orders")
    assert len(orders.parts) >= 4, orders.parts
    assert orders.parts[0].header and not any(p.header for p in orders.parts[1:])
    assert orders.parts[0].first_page == 0 and orders.parts[-1].last_page is None
    assert all(a.last_page == b.first_page for a, b in zip(orders.parts, orders.parts[1:]))
    assert sum(p.rows for p in orders.parts) == orders.rows == 200000
    assert orders.content_checksum and not manifest.table("app.customers").parts
    assert read_manifest(snapshot).table("app.orders").parts == orders.parts
    assert len({p.file for p in orders.parts}) == len(orders.parts)

    manifest = verify_snapshot(snapshot)
    with dbs.loader() as conn:
        report = swap_snapshot(dbs.loader, conn, snapshot, manifest, environment="env", jobs=3)
    assert _app_tables(dbs.targets, dbs.env) == prod
    # One transaction per part wrote app.orders; the checks' proof takes them all. Rows written
    # beside each other cannot be frozen as they are copied: no page is all-visible yet.
    assert len(report.table_transactions["app.orders"].split(",")) == len(orders.parts)
    assert _visible_pages(dbs)[1] == 0
    with dbs.loader() as conn:
        found = unchanged_since_load(conn, manifest, report.table_transactions)
    assert all(f.ok for f in found), found
    with dbs.admin() as conn:
        conn.execute("UPDATE app.orders SET total = total WHERE id = (SELECT min(id) FROM app.orders)")
    with dbs.loader() as conn:
        found = {f.table: f for f in unchanged_since_load(conn, manifest, report.table_transactions)}
    assert found["app.orders"].written_since == 1 and found["app.customers"].ok

    # One connection fills the parts one after another: in one transaction, with COPY FREEZE, as it
    # fills a whole table, so its pages are all-visible and the first scan sets no hint bits (but
    # for the few each part's COPY extended the table by and left empty, which are not).
    with dbs.loader() as conn:
        report = swap_snapshot(dbs.loader, conn, snapshot, manifest, environment="env", jobs=1)
    assert _app_tables(dbs.targets, dbs.env) == prod
    assert len(report.table_transactions["app.orders"].split(",")) == 1
    pages, visible = _visible_pages(dbs)
    assert pages > 0 and visible > 0.8 * pages, (pages, visible)
    with dbs.loader() as conn:
        assert all(f.ok for f in unchanged_since_load(conn, manifest, report.table_transactions))

    # The load in place reads the parts in order as one CSV.
    with dbs.loader() as conn:
        load_snapshot(conn, snapshot, manifest, environment="env")
    assert _app_tables(dbs.targets, dbs.env) == prod
