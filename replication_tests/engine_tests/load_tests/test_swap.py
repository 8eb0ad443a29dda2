"""load: swap on real PostgreSQL: the same definitions after, readers never dark, refusals before writing."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from replication.engine.errors import LoadVerificationError, SwapRefusedError
from replication.engine.load import load_snapshot
from replication.engine.load.refresh import choose_mode
from replication.engine.load.swap import swap_snapshot
from replication.engine.snapshot.verify import verify_snapshot
from replication_tests.conftest import table_fingerprints
from replication.engine.pg.session import libpq_options

from .swap_support import create_swap_databases


def _fingerprints(server, database):
    with server.connect(database, options=libpq_options()) as conn:
        return {k: v for k, v in table_fingerprints(conn).items() if k.startswith("app.")}


def _swap(dbs, directory, **kwargs):
    manifest = verify_snapshot(directory)
    with dbs.loader() as conn:
        return swap_snapshot(dbs.loader, conn, directory, manifest, environment="env", **kwargs)


@pytest.fixture
def dbs(cluster, request):
    return create_swap_databases(cluster.source, cluster.targets, request.node.name[5:30].lower())


def test_swap_replaces_the_tables_and_pg_dump_prints_the_same_schema(dbs, tmp_path):
    manifest = dbs.snapshot(tmp_path / "snap")
    with dbs.loader() as conn:
        # Partitions, inheritance children and every dependent below: auto swaps this environment.
        assert choose_mode(conn, "env", "auto", [e.ref for e in manifest.tables])[:2] == ("swap", "")
    before = dbs.schema_dump()
    report = _swap(dbs, tmp_path / "snap", jobs=2)

    assert dbs.schema_dump() == before
    assert _fingerprints(dbs.targets, dbs.env) == _fingerprints(dbs.source, dbs.prod)
    assert report.mode == "swap" and report.jobs == 2 and report.switch_seconds < 1.0
    assert dbs.private_schemas() == []
    assert set(report.repointed) >= {
        "view app.rich", "view audit.order_emails", "function app.order_count",
        "materialized view app.order_totals (rebuilt)", "materialized view audit.email_count (refreshed)",
        "foreign key notes_order_id_fkey of audit.notes", "sequence app.customers_id_seq (owned by app.customers.id)",
        "publication orders_pub (app.orders)", "publication orders_pub (app.customers)"}
    with dbs.admin() as conn:
        # Every dependent reads the new rows: the function's body, the views, both materialized views.
        assert conn.execute("SELECT app.order_count()").fetchone()[0] == 5000
        assert conn.execute("SELECT count(*) FROM audit.order_emails").fetchone()[0] == 5000
        assert conn.execute("SELECT n FROM audit.email_count").fetchone()[0] == 5000
        assert conn.execute("SELECT sum(total) FROM app.order_totals").fetchone()[0] == \
            conn.execute("SELECT sum(total) FROM app.orders").fetchone()[0]
        # The outside table's key is enforced against the new rows (yesterday's note points at order 10).
        assert conn.execute("SELECT convalidated FROM pg_constraint WHERE conname = 'notes_order_id_fkey'").fetchone()[0]
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute("INSERT INTO audit.notes VALUES (2, -1)")
        # Serial and identity columns go on above what was loaded.
        assert conn.execute("SELECT nextval('app.customers_id_seq')").fetchone()[0] > 1000
        new_order = conn.execute("INSERT INTO app.orders (customer_id, total) VALUES (1, 1) RETURNING id").fetchone()[0]
        assert new_order > conn.execute("SELECT max(id) FROM app.orders WHERE id <> %s", (new_order,)).fetchone()[0]
        # The publication still publishes the new tables, with its column list and row filter.
        assert conn.execute("SELECT count(*) FROM pg_publication_tables WHERE pubname = 'orders_pub'").fetchone()[0] == 2
    with dbs.reader() as conn:
        # Grants and the row-level policy hold for other roles.
        assert conn.execute("SELECT count(*) FROM app.orders").fetchone()[0] == 5001  # the test's own insert too
        assert conn.execute("SELECT n FROM app.rich_count").fetchone()[0] == \
            conn.execute("SELECT count(*) FROM app.orders WHERE total > 100").fetchone()[0]


def test_a_second_swap_and_an_in_place_load_after_it_give_the_same(dbs, tmp_path):
    dbs.snapshot(tmp_path / "snap")
    before = dbs.schema_dump()
    _swap(dbs, tmp_path / "snap", jobs=1)
    _swap(dbs, tmp_path / "snap", jobs=3)
    with dbs.loader() as conn:
        load_snapshot(conn, tmp_path / "snap", verify_snapshot(tmp_path / "snap"), environment="env")
    assert dbs.schema_dump() == before
    assert _fingerprints(dbs.targets, dbs.env) == _fingerprints(dbs.source, dbs.prod)


def test_readers_see_yesterday_until_the_switch_and_never_wait_a_second(tmp_path, cluster):
    big = create_swap_databases(cluster.source, cluster.targets, "swapread", customers=20000, orders=600000)
    big.snapshot(tmp_path / "snap")
    with big.admin() as conn:
        yesterday = conn.execute("SELECT count(*) FROM app.orders").fetchone()[0]
    seen, waits, stop = [], [], threading.Event()

    def poll():
        with big.reader() as conn:
            while not stop.is_set():
                began = time.monotonic()
                seen.append(conn.execute("SELECT count(*) FROM app.orders").fetchone()[0])
                waits.append(time.monotonic() - began)
                time.sleep(0.05)

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        time.sleep(0.3)
        report = _swap(big, tmp_path / "snap", jobs=2)
        time.sleep(0.3)
    finally:
        stop.set()
        reader.join()
    # Yesterday's rows, then today's, never anything between.
    assert seen[0] == yesterday and seen[-1] == 600000
    switched = seen.index(600000)
    assert set(seen[:switched]) == {yesterday} and set(seen[switched:]) == {600000}
    assert len(seen) > 20, "the reader must have polled throughout the load"
    assert max(waits) < 1.0, f"a reader waited {max(waits):.2f} s (switch held {report.switch_seconds} s)"


def test_a_swap_that_cannot_carry_an_object_refuses_before_writing_and_auto_loads_in_place(dbs, tmp_path):
    dbs.snapshot(tmp_path / "snap")
    with dbs.admin() as conn:
        conn.execute("CREATE FUNCTION app.recent() RETURNS SETOF app.orders LANGUAGE sql AS 'SELECT * FROM app.orders'")
        conn.execute("ALTER FUNCTION app.recent() OWNER TO swap_loader")
    before, rows = dbs.schema_dump(), _fingerprints(dbs.targets, dbs.env)
    with pytest.raises(SwapRefusedError) as refused:
        _swap(dbs, tmp_path / "snap")
    assert "function app.recent()" in str(refused.value) and "nothing was written" in str(refused.value)
    assert dbs.schema_dump() == before and _fingerprints(dbs.targets, dbs.env) == rows
    assert dbs.private_schemas() == []
    manifest = verify_snapshot(tmp_path / "snap")
    with dbs.loader() as conn:
        mode, reason, _ = choose_mode(conn, "env", "auto", [e.ref for e in manifest.tables])
        assert mode == "in_place" and "function app.recent()" in reason and "row type" in reason
        with pytest.raises(SwapRefusedError):
            choose_mode(conn, "env", "swap", [e.ref for e in manifest.tables])
        assert choose_mode(conn, "env", "in_place", [e.ref for e in manifest.tables]) == ("in_place", "", None)


def test_a_table_owned_by_another_role_is_named_with_what_to_grant(dbs, tmp_path):
    dbs.snapshot(tmp_path / "snap")
    with dbs.admin() as conn:
        conn.execute("CREATE ROLE swap_owner")
        conn.execute("ALTER TABLE app.customers OWNER TO swap_owner")
        conn.execute("GRANT ALL ON app.customers, app.customers_id_seq TO swap_loader")
    try:
        with pytest.raises(SwapRefusedError) as refused:
            _swap(dbs, tmp_path / "snap")
        assert 'app.customers is owned by swap_owner' in str(refused.value)
        assert 'grant "swap_owner" TO "swap_loader"' in str(refused.value)
    finally:
        with dbs.admin() as conn:
            conn.execute("ALTER TABLE app.customers OWNER TO swap_loader")
            conn.execute("DROP ROLE swap_owner")


@pytest.mark.parametrize("ranged", [False, True])
def test_a_copy_that_differs_from_production_is_refused_before_the_switch(dbs, tmp_path, monkeypatch, ranged):
    """Verified before anything live changes, whole or (large tables) summed from page ranges read at once."""
    import replication.engine.load.swap as swap

    if ranged:
        monkeypatch.setattr(swap, "RANGED_CHECKSUM_BYTES", 0)
    dbs.snapshot(tmp_path / "snap")
    with dbs.admin() as conn:
        # The environment's column keeps whole seconds: every loaded time with microseconds is rounded.
        conn.execute("DROP VIEW app.rich_count, app.rich")
        conn.execute("ALTER TABLE app.orders ALTER COLUMN placed TYPE timestamptz(0)")
    before, rows = dbs.schema_dump(), _fingerprints(dbs.targets, dbs.env)
    with pytest.raises(LoadVerificationError) as differs:
        _swap(dbs, tmp_path / "snap", jobs=2)
    assert "app.orders differs from production" in str(differs.value)
    assert dbs.schema_dump() == before and _fingerprints(dbs.targets, dbs.env) == rows
    assert dbs.private_schemas() == [], "the copy that failed its check is dropped at once"
