"""Per-environment subsets through Dagster: one snapshot, a different subset and mask per environment, proof in checks."""

import dagster as dg
import pytest

from replication.engine.pg.session import libpq_options

from .test_masking import run
from .test_replication_run import failure_messages, materializations
from .test_unattended import check_results, checks_only

CONFIG = {"environments": {
    "dev": {"subset": {"shop.customers": {"percent": 10}},
            "mask": {"shop.customers.email": "email", "shop.customers.full_name": "name"}, "unmasked_pii": "allow"},
    "staging": {},
    "qa": {"subset": {"shop.customers": {"percent": 25},
                      "shop.orders": {"where": "status = 'refunded'"}}},
}}


def counts(cluster, name) -> dict[str, int]:
    with cluster.server_for(name).connect(cluster.accounts[name].database, options=libpq_options()) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in (
            "shop.customers", "shop.orders", "shop.order_items", "shop.products", '"Ops"."Audit Log"')}


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def test_each_environment_gets_its_own_subset_from_one_snapshot_and_every_check_passes(cluster, replication_env,
                                                                                        instance, monkeypatch):
    monkeypatch.setenv("MASKING_KEY", "subset-asset-test-key")
    result = run(CONFIG, instance)
    assert result.success, failure_messages(result)
    checks = check_results(result)
    assert checks and all(checks.values()), checks
    assert checks["dev_db:subset_closed_under_foreign_keys"] and checks["qa_db:subset_closed_under_foreign_keys"]
    assert "staging_db:subset_closed_under_foreign_keys" not in checks
    prod, dev, qa, staging = (counts(cluster, n) for n in ("prod", "dev", "qa", "staging"))
    assert staging == prod
    assert dev["shop.customers"] < qa["shop.customers"] < prod["shop.customers"]
    assert dev["shop.products"] == qa["shop.products"] == prod["shop.products"]  # no root leads to it: whole
    metadata = materializations(result)
    kept = {r.data["table"]: (r.data["rows_kept"], r.data["snapshot_rows"])
            for r in metadata["dev_db"]["subset_tables"].value.records}
    assert kept["shop.customers"] == (dev["shop.customers"], prod["shop.customers"])
    assert kept["shop.order_items"] == (dev["shop.order_items"], prod["shop.order_items"])
    assert metadata["dev_db"]["dagster/row_count"].value < metadata["staging_db"]["dagster/row_count"].value
    assert "subset_tables" not in metadata["staging_db"]
    # load: auto swapped every environment: masked and subset tables were built beside the live ones.
    assert {metadata[f"{env}_db"]["load_mode"].value for env in ("dev", "staging", "qa")} == {"swap"}
    # Refunded orders are a root in QA: every one of them is there, with its customer.
    with cluster.server_for("prod").connect(cluster.accounts["prod"].database, options=libpq_options()) as conn:
        refunded = conn.execute("SELECT count(*) FROM shop.orders WHERE status = 'refunded'").fetchone()[0]
    with cluster.server_for("qa").connect(cluster.accounts["qa"].database, options=libpq_options()) as conn:
        assert conn.execute("SELECT count(*) FROM shop.orders WHERE status = 'refunded'").fetchone()[0] == refunded
    print({name: counts(cluster, name) for name in ("prod", "dev", "qa", "staging")})


def test_the_checks_fail_on_a_subset_changed_after_its_load(cluster, replication_env, instance, monkeypatch):
    monkeypatch.setenv("MASKING_KEY", "subset-asset-test-key")
    assert run(CONFIG, instance, assets=["prod_snapshot", "dev_db"]).success

    def checks():
        result = checks_only(CONFIG).execute_in_process(partition_key="2026-11-12", instance=instance,
                                                        raise_on_error=False)
        return {k: v for k, v in check_results(result).items() if k.startswith("dev_db:")}

    assert all(checks().values())
    with cluster.server_for("dev").connect(cluster.accounts["dev"].database, options=libpq_options()) as conn:
        conn.execute("DELETE FROM shop.order_items WHERE ctid IN (SELECT ctid FROM shop.order_items LIMIT 1)")
    found = checks()
    assert found["dev_db:rows_and_checksums_match_snapshot"] is False
    assert found["dev_db:subset_closed_under_foreign_keys"] is True  # a child less breaks no reference
    # A parent removed behind the foreign keys' back (triggers off): the closure is broken.
    with cluster.server_for("dev").connect(cluster.accounts["dev"].database, options=libpq_options()) as conn:
        conn.execute("SET session_replication_role = replica; "
                     "DELETE FROM shop.customers WHERE id = (SELECT min(customer_id) FROM shop.orders)")
    assert checks()["dev_db:subset_closed_under_foreign_keys"] is False
