"""Per-environment masking through Dagster: the shipped policy, privacy by default, proof in checks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from replication.config import parse_config
from replication.definitions import build_definitions
from replication.engine.pg.session import libpq_options

from ..helpers import JOB
from .test_replication_run import failure_messages, materializations
from .test_unattended import check_results

REPO = Path(__file__).resolve().parents[2]
MASKED = ["email", "full_name", "Display Name", "note", "birthday"]


def run(config: dict, instance, partition="2026-11-12", assets=None):
    defs = build_definitions(parse_config(config))
    return defs.resolve_job_def(JOB).execute_in_process(
        partition_key=partition, instance=instance, raise_on_error=False,
        asset_selection=[dg.AssetKey(a) for a in assets] if assets else None)


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def customers(cluster, name):
    with cluster.server_for(name).connect(cluster.accounts[name].database, options=libpq_options()) as conn:
        return {row[0]: row for row in conn.execute(
            'SELECT id, email, full_name, "Display Name", note, birthday::text, is_active, created_at::text, tags::text FROM shop.customers')}


def test_the_shipped_policy_masks_and_subsets_dev_and_qa_and_keeps_staging_exact(cluster, replication_env, tmp_path):
    """`make demo`'s configuration, through the Dagster CLI: every check green."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, **cluster.env_vars(), "REPLICATION_CONFIG": str(REPO / "replication.yaml"),
           "DAGSTER_HOME": str(home)}
    result = subprocess.run([sys.executable, "-m", "dagster", "job", "execute", "-m", "replication", "-j", JOB,
                             "--tags", json.dumps({"dagster/partition": "2026-11-11"})],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    output = result.stdout + result.stderr
    assert "masked_values_differ_from_production' on 'dev_db' passed" in output
    assert "masked_values_differ_from_production' on 'qa_db' passed" in output
    assert "failed" not in output.lower().replace("failed: 0", "")
    prod = customers(cluster, "prod")
    assert customers(cluster, "staging") == prod
    assert cluster.fingerprints("staging") == cluster.fingerprints("prod")
    assert "subset_closed_under_foreign_keys' on 'dev_db' passed" in output
    kept = {}
    for name in ("dev", "qa"):
        masked = customers(cluster, name)
        kept[name] = set(masked)
        assert set(masked) < set(prod)  # a subset: 10% of the customers in Dev, 25% in QA
        for key, row in masked.items():
            original = prod[key]
            assert row[6:] == original[6:]  # unmasked columns are production's
            assert row[1] != original[1] and row[2] != original[2]
            assert row[5] is None
        # Products are downstream of no root: whole, and exact.
        assert cluster.fingerprints(name)["shop.products"] == cluster.fingerprints("prod")["shop.products"]
    assert len(kept["dev"]) < len(kept["qa"])
    # One key, every environment: the same person has the same fake email in Dev and QA.
    dev, qa = customers(cluster, "dev"), customers(cluster, "qa")
    both = kept["dev"] & kept["qa"]
    assert both and {k: dev[k][1] for k in both} == {k: qa[k][1] for k in both}


def test_error_refuses_an_uncovered_personal_column_and_names_it(cluster, replication_env, instance):
    assert run({"environments": {"dev": {}, "staging": {}, "qa": {}}}, instance).success
    before = cluster.fingerprints("dev")
    partial = {"environments": {"dev": {"mask": {"shop.customers.email": "email"}}, "staging": {}, "qa": {}}}
    result = run(partial, instance, assets=["prod_snapshot", "dev_db"])
    message = failure_messages(result)["dev_db"]
    for column, rule in [("shop.customers.full_name", "name"), ("shop.customers.Display Name", "name"),
                         ("shop.customers.birthday", "null")]:
        assert f"{column}: {rule}" in message
    assert "unmasked_pii is error" in message and "nothing was written" in message
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)
    assert cluster.fingerprints("dev") == before


def test_warn_loads_and_reports_and_allow_is_silent(cluster, replication_env, instance):
    config = {"environments": {"dev": {"unmasked_pii": "warn", "mask": {"shop.customers.email": "email"}},
                               "staging": {}, "qa": {"unmasked_pii": "allow", "mask": {"shop.customers.full_name": "hash"}}}}
    result = run(config, instance)
    assert result.success
    metadata = materializations(result)
    assert "shop.customers.full_name" in metadata["dev_db"]["unmasked_personal_columns"].value
    assert metadata["qa_db"]["unmasked_personal_columns"].value == {}
    assert metadata["dev_db"]["masked_columns"].value == {"shop.customers.email": "email"}
    assert metadata["dev_db"]["load_mode"].value == metadata["qa_db"]["load_mode"].value == "swap"
    warnings = [e.message for e in result.all_events if e.event_type_value == "STEP_WORKER_STARTED"] + [
        r.message for r in instance.all_logs(result.run_id) if r.level == 30]
    assert any("dev: loading unmasked columns that look personal" in w for w in warnings)
    assert not any(w.startswith("qa:") for w in warnings)
    assert all(check_results(result).values()), check_results(result)


def test_masked_values_check_fails_when_a_production_value_survives(cluster, replication_env, instance):
    # {sql: email} keeps the value as it is: the check must catch it.
    config = {"environments": {"dev": {"unmasked_pii": "allow", "mask": {"shop.customers.email": {"sql": "email"}}},
                               "staging": {}, "qa": {}}}
    result = run(config, instance)
    checks = check_results(result)
    assert checks["dev_db:masked_values_differ_from_production"] is False
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.check_name == "masked_values_differ_from_production")
    assert "shop.customers.email (" in evaluation.description and "example.com" not in evaluation.description


STALE_MASKS = ("environments:\n  dev:\n    mask:\n      shop.customers.emial: email\n"
               "      shop.customers.created_at: name\n  staging: {}\n  qa: {}\n")


def test_definitions_load_with_a_stale_mask_and_only_its_environment_fails(cluster, replication_env, instance, tmp_path):
    """A mask production's schema has outgrown: the code location loads, Dev fails saying why, the rest run."""
    assert run({"environments": {"dev": {}, "staging": {}, "qa": {}}}, instance).success  # a snapshot on disk
    stale = tmp_path / "replication.yaml"
    stale.write_text(STALE_MASKS)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_")},
           "DAGSTER_HOME": str(tmp_path), "REPLICATION_CONFIG": str(stale), "SNAPSHOT_DIR": str(replication_env)}
    validated = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-w",
                                str(REPO / "workspace.yaml")], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert validated.returncode == 0, (validated.stdout + validated.stderr)[-3000:]

    before = cluster.fingerprints("dev")
    import yaml

    result = run(yaml.safe_load(STALE_MASKS), instance)
    messages = failure_messages(result)
    print(f"\nstale mask: {messages}")
    assert set(messages) == {"dev_db"}
    assert "environments.dev.mask: shop.customers has no column 'emial'" in messages["dev_db"]
    assert "shop.customers.created_at is timestamp with time zone, and name produces text" in messages["dev_db"]
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)
    assert cluster.fingerprints("dev") == before
    materialized = set(materializations(result))
    assert {"prod_snapshot", "staging_db", "qa_db"} <= materialized and "dev_db" not in materialized
    check = next(e for e in result.get_asset_check_evaluations() if e.check_name == "mask_rules_match_snapshot")
    assert check.passed is False and "emial" in check.description
    assert check_results(result)["staging_db:rows_and_checksums_match_snapshot"] is True
