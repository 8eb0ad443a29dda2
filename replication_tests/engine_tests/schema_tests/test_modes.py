"""schema: strict | shared | add | production on real PostgreSQL, across production's migrations between two runs."""

from __future__ import annotations

import pytest

from replication.engine.schema.drift import compare
from replication.engine.snapshot.verify import verify_snapshot

from .schema_support import MIGRATED_ROWS, MIGRATION, RENAME, create_schema_databases, expect_error


@pytest.fixture
def dbs(cluster, request):
    return create_schema_databases(cluster.source, cluster.targets, "sm_" + request.node.name[5:25].lower())


def _migrate(dbs, tmp_path, name="snap", rename=False):
    dbs.on_prod(MIGRATION + (RENAME if rename else ""))
    dbs.on_prod(MIGRATED_ROWS)
    dbs.snapshot(tmp_path / name)
    return tmp_path / name


def test_the_snapshot_records_production_definitions_and_its_pg_dump(dbs, tmp_path):
    manifest = dbs.snapshot(tmp_path / "snap")
    assert manifest.schema_dump is not None and manifest.format_version == 4
    users = next(t for t in manifest.definitions["tables"] if t["name"] == "users")
    assert [c["name"] for c in users["columns"]] == ["id", "org_id", "email", "mood", "old_name"]
    assert manifest.definitions["enums"] == {"app.mood": ["sad", "ok"]}
    dump = (tmp_path / "snap" / manifest.schema_dump.file).read_text()
    assert "CREATE TABLE app.users" in dump and "CREATE TYPE app.mood AS ENUM" in dump
    # The dump is one more object of the snapshot, proven by its sha256 like the tables.
    (tmp_path / "snap" / manifest.schema_dump.file).write_text(dump + "-- changed\n")
    expect_error(lambda: verify_snapshot(tmp_path / "snap"), "changed after capture")


def test_strict_fails_before_writing_and_names_the_new_column(dbs, tmp_path):
    snap = _migrate(dbs, tmp_path)
    before = dbs.fingerprints(dbs.targets, dbs.env)
    expect_error(lambda: dbs.refresh(snap, "strict"), "table app.teams does not exist",
                 "Nothing was written")
    assert dbs.fingerprints(dbs.targets, dbs.env) == before


def test_production_follows_every_migration_and_leaves_no_drift(dbs, tmp_path):
    snap = _migrate(dbs, tmp_path, rename=True)
    refreshed = dbs.refresh(snap, "production")
    report = refreshed.report
    assert dbs.same_data()
    assert compare(dbs.definitions("prod"), dbs.definitions("env")) == []
    assert report.mode == "in_place" and "schema: production changes definitions" in report.mode_reason
    assert {"add column app.users.nickname (text)", "drop column app.users.old_name",
            "retype column app.users.id from integer to bigint", "add value 'happy' to enum app.mood",
            "create partition app.events_2026 of app.events", "create index users_email on app.users",
            "drop column app.orgs.name", "add column app.orgs.title (text)", "table app.teams"} <= set(report.schema_changes)
    assert "table app.teams is missing" in report.schema_differences
    assert dbs.columns("app.users") == [("id", "bigint"), ("org_id", "integer"), ("email", "text"),
                                        ("mood", "app.mood"), ("nickname", "text"), ("plan", "text")]
    # The next day's load changes nothing more and is swapped in again.
    again = dbs.refresh(snap, "production").report
    assert again.schema_changes == [] and again.mode == "swap" and dbs.same_data()


def test_production_turns_an_empty_database_into_production(cluster, tmp_path):
    dbs = create_schema_databases(cluster.source, cluster.targets, "sm_empty", env_schema=False)
    dbs.on_prod(MIGRATION + RENAME)
    dbs.on_prod(MIGRATED_ROWS + """
        CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
        -- a body's own comment survives
          NEW.nickname := coalesce(NEW.nickname, 'anon'); RETURN NEW;
        END $$;
        CREATE TRIGGER users_touch BEFORE INSERT ON app.users FOR EACH ROW EXECUTE FUNCTION app.touch();
        CREATE DOMAIN app.email AS text CHECK (VALUE LIKE '%@%');
        ALTER TABLE app.teams ADD COLUMN contact app.email;
        CREATE ROLE sm_prod_only_role;
        GRANT SELECT ON app.teams TO sm_prod_only_role;
        GRANT SELECT ON app.flags TO PUBLIC;""")
    manifest = dbs.snapshot(tmp_path / "snap")
    refreshed = dbs.refresh(tmp_path / "snap", "production")
    assert dbs.same_data()
    assert dbs.schema_dump("env") == dbs.schema_dump("prod")
    assert sorted(refreshed.report.schema_changes)[:1] and \
        set(refreshed.report.schema_changes) >= {"table app.users", "create schema app", "create function app.touch()"}
    assert refreshed.report.skipped_grants == ["GRANT SELECT ON TABLE app.teams TO sm_prod_only_role;"]
    with dbs.targets.connect(dbs.env) as conn:
        assert conn.execute("SELECT has_table_privilege('public', 'app.flags', 'SELECT')").fetchone()[0]
        # Sequences go on above the loaded rows; what the load created belongs to the loading role.
        assert conn.execute("SELECT nextval('app.orgs_id_seq')").fetchone()[0] == 6
        owners = {r[0] for r in conn.execute(
            "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class WHERE relnamespace = 'app'::regnamespace")}
        assert owners == {"schema_loader"}
    assert len(manifest.tables) == 6


def test_add_creates_what_production_added_and_keeps_what_the_environment_has(dbs, tmp_path):
    snap = _migrate(dbs, tmp_path)
    report = dbs.refresh(snap, "add").report
    # Production's new columns, table, index, enum value and partition exist here now, loaded...
    assert [c for c, _ in dbs.columns("app.users")] == ["id", "org_id", "email", "mood", "old_name", "nickname", "plan"]
    with dbs.targets.connect(dbs.env) as conn:
        assert conn.execute("SELECT count(*), count(*) FILTER (WHERE mood = 'happy') FROM app.users").fetchone() == (40, 10)
        assert conn.execute("SELECT count(*) FROM app.teams").fetchone()[0] == 10
        assert conn.execute("SELECT count(*) FROM app.events_2026").fetchone()[0] == 20
        assert conn.execute("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'app.users'::regclass "
                            "AND attname = 'plan'").fetchone()[0]
        assert conn.execute("SELECT count(*) FROM pg_constraint WHERE conname = 'teams_org_id_fkey' "
                            "AND convalidated").fetchone()[0] == 1
        # ... and what is the environment's own stays: the dropped column (empty now), the narrower type.
        assert conn.execute("SELECT count(old_name) FROM app.users").fetchone()[0] == 0
    assert dbs.columns("app.users")[0] == ("id", "integer")
    assert "add column app.users.plan (text)" in report.schema_changes
    assert not any(change.startswith(("drop", "retype")) for change in report.schema_changes)
    # What lags is drift: shown, not fixed.
    drift = {d.describe() for d in compare(dbs.definitions("prod"), dbs.definitions("env"))}
    assert drift == {"column app.users.id is integer here and bigint in production",
                     "column app.users.old_name is not in production"}


def test_a_value_that_does_not_fit_fails_naming_the_column_and_both_types(dbs, tmp_path):
    dbs.on_prod(MIGRATION)
    dbs.on_prod(MIGRATED_ROWS + "INSERT INTO app.users (id, org_id) VALUES (3000000000, 1);")
    dbs.snapshot(tmp_path / "snap")
    before = dbs.fingerprints(dbs.targets, dbs.env)
    message = expect_error(lambda: dbs.refresh(tmp_path / "snap", "add"), "app.users", "'id'", "bigint", "integer",
                           "out of range for type integer", "SQLSTATE 22003", "rolled back")
    assert "3000000000" not in message
    assert dbs.fingerprints(dbs.targets, dbs.env) == before
    assert [c for c, _ in dbs.columns("app.users")] == ["id", "org_id", "email", "mood", "old_name"]


def test_add_refuses_an_environment_only_not_null_column_without_default(dbs, tmp_path):
    dbs.on_prod(RENAME)
    dbs.snapshot(tmp_path / "snap")
    expect_error(lambda: dbs.refresh(tmp_path / "snap", "add"), "column 'name' of table app.orgs is NOT NULL",
                 "Nothing was written")
    # Under production the environment's column goes, and the rename loads.
    dbs.refresh(tmp_path / "snap", "production")
    assert dbs.columns("app.orgs") == [("id", "integer"), ("title", "text")] and dbs.same_data()


def test_shared_loads_an_environment_whose_migrations_run_ahead(dbs, tmp_path):
    # Dev renamed and dropped columns before production did; production added a table Dev lacks.
    dbs.on_env("ALTER TABLE app.users RENAME COLUMN old_name TO legacy_name; ALTER TABLE app.users DROP COLUMN email;")
    dbs.on_prod("CREATE TABLE app.audit (id int PRIMARY KEY); INSERT INTO app.audit VALUES (1);")
    dbs.snapshot(tmp_path / "snap")
    refreshed = dbs.refresh(tmp_path / "snap", "shared")
    report = refreshed.report
    assert report.skipped_tables == ["app.audit"]
    assert report.skipped_columns == {"app.users": ["email", "old_name"]}
    assert any("schema: shared skips app.audit" in line for line in refreshed.log)
    with dbs.targets.connect(dbs.env) as conn:
        assert conn.execute("SELECT count(*), count(legacy_name), sum(id) FROM app.users").fetchone() == (40, 0, 820)
        assert conn.execute("SELECT to_regclass('app.audit')").fetchone()[0] is None
    assert report.loaded_checksums["app.users"]
    assert {"table app.audit is missing", "column app.users.email (text) is missing",
            "column app.users.legacy_name is not in production"} <= set(report.schema_differences)


def test_shared_fails_clearly_where_production_rows_have_nowhere_to_go(dbs, tmp_path):
    dbs.on_prod("ALTER TYPE app.mood ADD VALUE 'happy'")
    dbs.on_prod("UPDATE app.users SET mood = 'happy' WHERE id = 3")
    dbs.snapshot(tmp_path / "enum")
    before = dbs.fingerprints(dbs.targets, dbs.env)
    message = expect_error(lambda: dbs.refresh(tmp_path / "enum", "shared"),
                           "column 'mood' of table app.users (app.mood)",
                           "invalid input value for enum app.mood", "SQLSTATE 22P02", "schema: add")
    assert "happy" not in message  # production's values stay out of messages
    dbs.on_prod("CREATE TABLE app.events_2026 PARTITION OF app.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')")
    dbs.snapshot(tmp_path / "partition")
    expect_error(lambda: dbs.refresh(tmp_path / "partition", "shared"), "app.events_2026", "nowhere to go",
                 "Nothing was written")
    assert dbs.fingerprints(dbs.targets, dbs.env) == before
    # schema: add brings both level, and the enum value is committed before the load.
    dbs.refresh(tmp_path / "partition", "add")
    assert dbs.same_data()


def test_a_snapshot_from_before_definitions_loads_under_strict_and_shared_only(dbs, tmp_path):
    import json

    dbs.snapshot(tmp_path / "snap")
    path = tmp_path / "snap" / "manifest.json"
    raw = json.loads(path.read_text())
    (tmp_path / "snap" / raw["schema_dump"]["file"]).unlink()
    raw.update(format_version=3, definitions=None, schema_dump=None)
    path.write_text(json.dumps(raw))
    assert dbs.refresh(tmp_path / "snap", "strict").report.schema_differences == []
    assert dbs.refresh(tmp_path / "snap", "shared").report.skipped_columns == {}
    assert dbs.same_data()
    expect_error(lambda: dbs.refresh(tmp_path / "snap", "add"), "schema: add needs production's definitions",
                 "refresh: true", "Nothing was written")
