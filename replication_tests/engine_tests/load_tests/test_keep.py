"""keep: rows an environment owns survive each refresh, win over production's rows with their key,
and a kept row whose parent the new data lacks stops the load before anything changes."""

from __future__ import annotations

import pytest

from replication.engine.errors import ConfigurationError

from ..schema_tests.schema_support import create_schema_databases, expect_error

OWN_ROWS = """
INSERT INTO app.users (id, org_id, email) VALUES (7, 2, 'tester@example.test'), (900, 1, 'qa@example.test');
INSERT INTO app.flags VALUES ('staging_only', true);
"""


@pytest.fixture
def dbs(cluster, request):
    dbs = create_schema_databases(cluster.source, cluster.targets, "kp_" + request.node.name[5:25].lower())
    dbs.on_env("INSERT INTO app.orgs (name) SELECT 'org ' || g FROM generate_series(2, 5) g;" + OWN_ROWS)
    return dbs


KEEP = {"app.users": "email LIKE '%@example.test'", "app.flags": "all"}


def test_kept_rows_survive_and_win_over_production_rows_with_their_key(dbs, tmp_path):
    dbs.snapshot(tmp_path / "snap")
    report = dbs.refresh(tmp_path / "snap", "strict", keep=KEEP).report
    with dbs.targets.connect(dbs.env) as conn:
        users = conn.execute("SELECT id, email FROM app.users WHERE id IN (7, 8, 900) ORDER BY id").fetchall()
        assert users == [(7, "tester@example.test"), (8, "u8@prod.example"), (900, "qa@example.test")]
        assert conn.execute("SELECT count(*) FROM app.users").fetchone()[0] == 41  # 40 from production, 7 replaced
        # keep: all: the table is never replaced.
        assert conn.execute("SELECT name FROM app.flags").fetchall() == [("staging_only",)]
        assert conn.execute("SELECT count(*) FROM app.orgs").fetchone()[0] == 5
    assert report.kept_rows == {"app.users": [2, 1]}
    assert report.kept_tables == ["app.flags"]
    assert report.rows_after_load == {"app.users": 41}
    # Kept rows travel in a swap too: read from the live table, added to the verified new copy.
    assert report.mode == "swap"
    # The next day the same rows are kept again, and nothing else of the environment's survives.
    dbs.on_env("INSERT INTO app.users (id, email) VALUES (901, 'gone@else.where')")
    again = dbs.refresh(tmp_path / "snap", "strict", keep=KEEP).report
    assert again.kept_rows == {"app.users": [2, 1]} and again.rows_after_load == {"app.users": 41}


@pytest.mark.parametrize("load", ["swap", "in_place"])
def test_a_kept_row_whose_parent_the_new_data_lacks_stops_the_load(dbs, tmp_path, load):
    dbs.on_env("INSERT INTO app.orgs (id, name) VALUES (77, 'staging org');"
               "INSERT INTO app.users (id, org_id, email) VALUES (901, 77, 'orphan@example.test');")
    dbs.snapshot(tmp_path / "snap")
    before = dbs.fingerprints(dbs.targets, dbs.env)
    message = expect_error(lambda: dbs.refresh(tmp_path / "snap", "strict", keep=KEEP, load=load),
                           "app.users", "org_id", "users_org_id_fkey", "app.orgs", "Nothing was changed")
    assert "1 kept row(s)" in message
    assert dbs.fingerprints(dbs.targets, dbs.env) == before
    # Keeping the parent too carries both over.
    report = dbs.refresh(tmp_path / "snap", "strict", keep={**KEEP, "app.orgs": "name = 'staging org'"}, load=load).report
    assert report.mode == load and report.kept_rows["app.orgs"] == [1, 0]
    with dbs.targets.connect(dbs.env) as conn:
        assert conn.execute("SELECT org_id FROM app.users WHERE id = 901").fetchone()[0] == 77


def test_a_bad_keep_rule_fails_before_writing(dbs, tmp_path):
    dbs.snapshot(tmp_path / "snap")
    before = dbs.fingerprints(dbs.targets, dbs.env)
    for keep, words in (({"app.nope": "all"}, ("keep names app.nope", "not a table of the snapshot")),
                        ({"app.users": "emial LIKE 'x'"}, ("keep condition for app.users", "emial"))):
        with pytest.raises(ConfigurationError) as raised:
            dbs.refresh(tmp_path / "snap", "strict", keep=keep)
        assert all(w in str(raised.value) for w in words), str(raised.value)
    assert dbs.fingerprints(dbs.targets, dbs.env) == before


def test_keep_works_with_masking_and_a_new_production_column(dbs, tmp_path, monkeypatch):
    from replication.engine.privacy.mask import MaskRule

    dbs.on_prod("ALTER TABLE app.users ADD COLUMN phone text; UPDATE app.users SET phone = '555-' || id;")
    dbs.snapshot(tmp_path / "snap")
    rules = {"app.users": {"email": MaskRule(strategy="email"), "phone": MaskRule(strategy="null")}}
    report = dbs.refresh(tmp_path / "snap", "add", keep=KEEP, masks=rules, masking_key="k" * 32).report
    with dbs.targets.connect(dbs.env) as conn:
        assert conn.execute("SELECT count(*) FROM app.users WHERE email LIKE '%@prod.example'").fetchone()[0] == 0
        assert conn.execute("SELECT count(phone) FROM app.users").fetchone()[0] == 0
        assert conn.execute("SELECT email FROM app.users WHERE id = 900").fetchone()[0] == "qa@example.test"
    assert report.kept_rows == {"app.users": [2, 1]} and "add column app.users.phone (text)" in report.schema_changes
    assert report.mode == "in_place"  # definitions changed: in the load's one transaction


def test_a_new_personal_column_meets_privacy_by_default_before_any_write(dbs, tmp_path):
    dbs.on_prod("ALTER TABLE app.orgs ADD COLUMN contact_email text;")
    dbs.snapshot(tmp_path / "snap")
    before = dbs.fingerprints(dbs.targets, dbs.env)
    with pytest.raises(Exception) as raised:
        dbs.refresh(tmp_path / "snap", "add", personal_data="error")
    assert "app.orgs.contact_email" in str(raised.value)
    assert dbs.fingerprints(dbs.targets, dbs.env) == before
    assert dbs.columns("app.orgs") == [("id", "integer"), ("name", "text")]



@pytest.mark.parametrize("load", ["swap", "in_place"])
def test_keep_works_with_a_subset(dbs, tmp_path, load):
    from replication.engine.subset.plan import SubsetRule

    dbs.snapshot(tmp_path / "snap")
    report = dbs.refresh(tmp_path / "snap", "strict", keep=KEEP, load=load,
                         subset={"app.orgs": SubsetRule(where="id <= 2")}).report
    with dbs.targets.connect(dbs.env) as conn:
        # Production's users of the two kept orgs (user 7 is not one of them), plus the environment's own two.
        orgs = conn.execute("SELECT array_agg(DISTINCT org_id ORDER BY org_id) FROM app.users").fetchone()[0]
        assert orgs == [1, 2]
        assert conn.execute("SELECT email FROM app.users WHERE id IN (7, 900) ORDER BY id").fetchall() == \
            [("tester@example.test",), ("qa@example.test",)]
    assert report.mode == load and report.kept_rows == {"app.users": [2, 0]}
    assert report.subset_rows["app.orgs"] == [2, 5]
