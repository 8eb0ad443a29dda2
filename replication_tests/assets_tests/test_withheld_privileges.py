"""A loading role without CREATE on its schema, through Dagster: the run succeeds and the metadata says why
each table kept its indexes."""

import dagster as dg
import pytest

from ..company import build_company
from ..engine_tests.load_tests.test_privileges import DATA, SCHEMA
from .test_masking import run
from .test_replication_run import failure_messages, materializations
from .test_unattended import check_results


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def test_the_materialization_names_each_table_loaded_with_its_indexes_in_place_and_why(
        cluster, tmp_path, monkeypatch, instance):
    company = build_company(cluster, "grants_ui", SCHEMA, DATA)
    with company.env() as conn:
        conn.execute("DO $$ BEGIN CREATE ROLE grants_admin; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        conn.execute(f"ALTER SCHEMA app OWNER TO grants_admin; GRANT USAGE ON SCHEMA app TO {company.loader.user}")
    for key, value in company.env_vars("dev").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SNAPSHOT_DIR", str(tmp_path))
    result = run({"environments": {"dev": {}}}, instance, partition="2026-11-19")
    assert result.success, failure_messages(result)
    checks = check_results(result)
    assert checks and all(checks.values()), checks
    in_place = materializations(result)["dev_db"]["tables_loaded_with_indexes_in_place"].value
    assert set(in_place) == {"app.accounts", "app.events"}
    assert all("may not CREATE in schema app" in why for why in in_place.values()), in_place
