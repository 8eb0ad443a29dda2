"""Prefilters on real PostgreSQL: an acyclic subset stages only the rows that can be kept, and keeps
exactly the closure computed here from production's rows."""

from __future__ import annotations

import pytest

from replication.engine.load import plan_load
from replication.engine.subset.prefilter import prefilter, prefilterable
from replication.engine.subset.plan import SubsetRule
from replication.engine.snapshot.verify import verify_snapshot

from .test_plan import DATA, KEY, Reference, chosen, subset_company, subset_snapshot, table_counts

# Shipments whose composite key holds a NULL reference nothing: no prefilter may keep them.
NULL_KEYS = "INSERT INTO shop.shipments SELECT 100000 + g, g, NULL FROM generate_series(1, 30) g;"


@pytest.fixture(scope="module")
def company(cluster):
    return subset_company(cluster, "prefilter", DATA + NULL_KEYS)


@pytest.fixture(scope="module")
def snapshot_dir(company, tmp_path_factory):
    return subset_snapshot(company, tmp_path_factory)


def load_and_compare(company, snapshot_dir, rules, roots):
    report = company.load(snapshot_dir, subset=rules, masking_key=KEY)
    with company.prod() as prod:
        reference = Reference(prod)
    kept = reference.closure(roots)
    with company.env() as env:
        assert table_counts(env) == reference.counts(kept)
    return report, reference.counts(kept)


def test_a_percent_root_and_its_followers_stage_little_more_than_they_keep(company, snapshot_dir):
    report, kept = load_and_compare(company, snapshot_dir, {"shop.orders": SubsetRule(percent=20)},
                                    {"shop.orders": lambda r: chosen(KEY, "shop.orders", f"({r['id']})", 20)})
    staged = report.subset_staged
    assert 0 < kept["shop.orders"] < 1200
    assert staged["shop.orders"] == kept["shop.orders"]  # the rule itself, exact
    # Items by a one-column key, shipments by a composite one: every kept row and a few collisions.
    assert kept["shop.order_items"] <= staged["shop.order_items"] < 1.2 * kept["shop.order_items"]
    assert kept["shop.shipments"] <= staged["shop.shipments"] < 1.2 * kept["shop.shipments"] + 5
    assert report.subset_rows["shop.order_items"] == [kept["shop.order_items"], 3600]
    print({t: f"kept {k} of {n}, staged {staged[t]}" for t, (k, n) in report.subset_rows.items()})


def test_a_where_root_is_staged_whole_and_its_followers_through_the_bitmap(company, snapshot_dir):
    report, kept = load_and_compare(company, snapshot_dir, {"shop.orders": SubsetRule(where="created_at < '2026-02-01'")},
                                    {"shop.orders": lambda r: str(r["created_at"]) < "2026-02-01"})
    assert report.subset_staged["shop.orders"] == 1200
    assert kept["shop.order_items"] <= report.subset_staged["shop.order_items"] < 1800


def test_tables_that_may_hold_parents_only_are_staged_whole(company, snapshot_dir):
    """Two roots meeting in order items: items pull parents into orders and products, which must be
    read whole; items and shipments still go through the filter (either parent's bitmap)."""
    rules = {"shop.orders": SubsetRule(percent=10), "shop.products": SubsetRule(where="id <= 2")}
    report, kept = load_and_compare(company, snapshot_dir, rules, {
        "shop.orders": lambda r: chosen(KEY, "shop.orders", f"({r['id']})", 10),
        "shop.products": lambda r: r["id"] <= 2})
    staged = report.subset_staged
    assert staged["shop.orders"] == 1200 and staged["shop.products"] == 50
    assert kept["shop.order_items"] <= staged["shop.order_items"] < 3600
    assert kept["shop.products"] > 2  # pulled in as parents of kept items


def test_what_is_filtered_and_what_is_read_whole(company, snapshot_dir):
    manifest = verify_snapshot(snapshot_dir)
    with company.loader_connection() as conn:
        cyclic = plan_load(conn, manifest, "dev", {}, None, {"shop.customers": SubsetRule(percent=5)}).subset
        acyclic = plan_load(conn, manifest, "dev", {}, None, {"shop.orders": SubsetRule(percent=5)}).subset
    # customers refer to customers: marking needs every row, to a fixed point.
    assert cyclic.cyclic and not any(prefilterable(cyclic, t) for t in cyclic.tables)
    assert {t.key for t in acyclic.tables if prefilterable(acyclic, t)} == {
        "shop.orders", "shop.order_items", "shop.shipments"}


def test_the_key_is_read_from_a_setting_never_written_into_a_statement(company, snapshot_dir):
    manifest = verify_snapshot(snapshot_dir)
    with company.loader_connection() as conn:
        plan = plan_load(conn, manifest, "dev", {}, None, {"shop.orders": SubsetRule(percent=5)}).subset
        orders = next(t for t in plan.tables if t.key == "shop.orders")
        statement = prefilter(conn, plan, orders, {}).as_string(conn)
    assert "current_setting('replication.subset_key')" in statement
    assert KEY not in statement and "sha256" in statement


def test_a_root_that_keeps_nothing_stages_no_follower(company, snapshot_dir):
    report, kept = load_and_compare(company, snapshot_dir, {"shop.orders": SubsetRule(where="id < 0")},
                                    {"shop.orders": lambda r: r["id"] < 0})
    assert kept["shop.orders"] == kept["shop.order_items"] == kept["shop.shipments"] == 0
    assert report.subset_staged["shop.order_items"] == report.subset_staged["shop.shipments"] == 0
