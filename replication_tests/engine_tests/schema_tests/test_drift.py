"""The schema_matches_production check: every difference listed, passing once production's definitions are taken."""

from __future__ import annotations

import pytest

from replication.checks import drift_result
from replication.engine.pg.session import libpq_options
from replication.engine.snapshot.verify import verify_snapshot

from .schema_support import MIGRATED_ROWS, MIGRATION, create_schema_databases


@pytest.fixture
def dbs(cluster):
    return create_schema_databases(cluster.source, cluster.targets, "sm_drift")


def _drift(dbs, snap):
    with dbs.targets.connect(dbs.env, options=libpq_options()) as conn:
        return drift_result("env_db", conn, verify_snapshot(snap, deep=False))


def test_the_drift_check_lists_each_difference_and_passes_under_production(dbs, tmp_path):
    dbs.on_prod(MIGRATION)
    dbs.on_prod(MIGRATED_ROWS)
    dbs.on_env("CREATE TABLE app.env_only (id int)")
    dbs.snapshot(tmp_path / "snap")
    result = _drift(dbs, tmp_path / "snap")
    assert not result.passed
    rows = {(r.data["difference"], r.data["table"], r.data["name"])
            for r in result.metadata["differences"].value.records}
    assert rows == {("missing_column", "app.users", "nickname"), ("missing_column", "app.users", "plan"),
                    ("extra_column", "app.users", "old_name"), ("type", "app.users", "id"),
                    ("missing_table", "app.teams", ""), ("extra_table", "app.env_only", ""),
                    ("missing_index", "app.users", "users_email"), ("missing_enum_value", "app.mood", "happy"),
                    ("missing_partition", "app.events", "app.events_2026")}
    assert "column app.users.id is integer here and bigint in production" in result.description
    dbs.on_env("DROP TABLE app.env_only")
    dbs.refresh(tmp_path / "snap", "production")
    assert _drift(dbs, tmp_path / "snap").passed
