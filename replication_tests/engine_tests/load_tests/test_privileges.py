"""Loading roles as companies grant them: without CREATE on the schema, without a table's ownership,
and without each privilege no path can do without."""

import pytest

from replication.engine.errors import PrivilegeError
from replication.engine.privacy.mask import MaskRule

from ...company import build_company
from ...conftest import table_fingerprints

SCHEMA = """
CREATE SCHEMA app;
CREATE TABLE app.accounts (id serial PRIMARY KEY, email text UNIQUE NOT NULL, created date);
CREATE TABLE app.events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                         account_id int NOT NULL REFERENCES app.accounts, kind text);
CREATE INDEX events_kind ON app.events (kind);
"""
DATA = """
INSERT INTO app.accounts (email, created) SELECT 'a' || g || '@example.org', DATE '2024-01-01' + g % 400
FROM generate_series(1, 2000) g;
INSERT INTO app.events (account_id, kind) SELECT 1 + g % 2000, 'kind ' || g % 7 FROM generate_series(1, 5000) g;
"""
# What the catalog holds of the schema's keys and indexes: the same before and after every load.
DEFINITIONS = """
SELECT c.relname, pg_catalog.pg_get_indexdef(i.indexrelid), i.indexrelid::regclass::text
FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'app'
UNION ALL
SELECT conrelid::regclass::text, pg_catalog.pg_get_constraintdef(oid), conname::text FROM pg_catalog.pg_constraint
WHERE connamespace = 'app'::regnamespace
ORDER BY 1, 2, 3
"""


@pytest.fixture(scope="module")
def company(cluster, tmp_path_factory):
    company = build_company(cluster, "grants", SCHEMA, DATA)
    # As a DBA sets it up: the schema belongs to an administrator, the loader owns its tables and
    # may use the schema, but not CREATE in it.
    with company.env() as conn:
        conn.execute("DO $$ BEGIN CREATE ROLE grants_admin; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        conn.execute(f"ALTER SCHEMA app OWNER TO grants_admin; GRANT USAGE ON SCHEMA app TO {company.loader.user}")
        assert conn.execute("SELECT has_schema_privilege(%s, 'app', 'CREATE')", (company.loader.user,)).fetchone() == (False,)
    company.folder = tmp_path_factory.mktemp("grants") / "prod_snapshot_20261125"
    company.snapshot(company.folder)
    return company


def definitions(company):
    with company.env() as conn:
        return conn.execute(DEFINITIONS).fetchall()


def test_owned_tables_in_a_schema_without_create_load_with_their_indexes_in_place(company):
    before = definitions(company)
    lines = []
    report = company.load(company.folder, rebuild_min_rows=0, log=lines.append)
    assert all(t.checksum_verified for t in report.tables) and report.total_rows == 7000
    assert set(report.fallback_tables) == {"app.accounts", "app.events"}
    for why in report.fallback_tables.values():
        assert "may not CREATE in schema app" in why and "in place" in why
        assert f'GRANT CREATE ON SCHEMA "app" TO "{company.loader.user}"' in why
    assert report.indexes_rebuilt == 0
    assert any("app.events" in line and "may not CREATE in schema app" in line for line in lines)
    assert definitions(company) == before
    with company.prod() as prod, company.env() as env:
        assert table_fingerprints(env) == table_fingerprints(prod)


def test_with_create_granted_the_same_tables_take_the_faster_path(company):
    with company.env() as conn:
        conn.execute(f"GRANT CREATE ON SCHEMA app TO {company.loader.user}")
    try:
        before = definitions(company)
        report = company.load(company.folder, rebuild_min_rows=0)
        assert report.fallback_tables == {} and report.indexes_rebuilt == 4
        assert definitions(company) == before
    finally:
        with company.env() as conn:
            conn.execute(f"REVOKE CREATE ON SCHEMA app FROM {company.loader.user}")


# Each case: the tables belong to the administrator, the loader has every privilege a load of
# another role's tables needs, less one.
WITHHELD = {
    "TRUNCATE on a table": ("REVOKE TRUNCATE ON app.events FROM {loader}", "GRANT TRUNCATE ON TABLE app.events TO"),
    "INSERT on a table": ("REVOKE INSERT ON app.accounts FROM {loader}", "GRANT INSERT ON TABLE app.accounts TO"),
    "SELECT on a table": ("REVOKE SELECT ON app.events FROM {loader}", "GRANT SELECT ON TABLE app.events TO"),
    "UPDATE on a sequence": ("REVOKE UPDATE ON SEQUENCE app.accounts_id_seq FROM {loader}",
                             "GRANT UPDATE ON SEQUENCE app.accounts_id_seq TO"),
    "SELECT on a sequence": ("REVOKE SELECT ON SEQUENCE app.accounts_id_seq FROM {loader}",
                             "GRANT SELECT ON SEQUENCE app.accounts_id_seq TO"),
    "TEMP on the database": ("REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC, {loader}",
                             'GRANT TEMPORARY ON DATABASE "{database}" TO'),
    "USAGE on the schema": ("REVOKE USAGE ON SCHEMA app FROM {loader}", 'GRANT USAGE ON SCHEMA "app" TO'),
}


@pytest.fixture
def not_owned(company):
    loader = company.loader.user
    with company.env() as conn:
        conn.execute(f"ALTER TABLE app.accounts OWNER TO grants_admin; ALTER TABLE app.events OWNER TO grants_admin; "
                     f"GRANT SELECT, INSERT, TRUNCATE ON ALL TABLES IN SCHEMA app TO {loader}; "
                     f"GRANT SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA app TO {loader}")
    try:
        yield company
    finally:
        with company.env() as conn:
            conn.execute(f"GRANT USAGE ON SCHEMA app TO {loader}; GRANT TEMPORARY ON DATABASE {company.loader.database} "
                         f"TO PUBLIC, {loader}; ALTER TABLE app.accounts OWNER TO {loader}; ALTER TABLE app.events OWNER TO {loader}")


@pytest.mark.parametrize("withheld", list(WITHHELD))
def test_a_withheld_privilege_fails_before_writing_and_names_the_grant(not_owned, withheld):
    company = not_owned
    revoke, grant = (text.format(loader=company.loader.user, database=company.loader.database)
                     for text in WITHHELD[withheld])
    # Masking stages rows in temporary tables: only then is TEMP needed.
    masks = {"app.events": {"kind": MaskRule("redact")}} if "TEMP" in withheld else None
    with company.env() as conn:
        conn.execute("TRUNCATE app.events, app.accounts")
        conn.execute(revoke)
        before = table_fingerprints(conn)
    with pytest.raises(PrivilegeError) as caught:
        company.load(company.folder, masks=masks)
    message = str(caught.value)
    print(f"\n{withheld}: {message}")
    assert f'{grant} "{company.loader.user}";' in message and "nothing was written" in message
    assert message.count("GRANT ") == 1
    with company.env() as conn:
        assert table_fingerprints(conn) == before
        # The GRANT the message names is the one that fixes it.
        conn.execute(message.split("run:\n  ")[1].split(";")[0])
    report = company.load(company.folder, masks=masks)
    assert report.total_rows == 7000 and set(report.fallback_tables) == {"app.accounts", "app.events"}
    assert all("not by the loading role" in why for why in report.fallback_tables.values())


def test_an_index_in_a_tablespace_without_create_keeps_its_table_in_place(company, cluster, tmp_path):
    import os
    import pwd

    from replication.demo.embedded import SYSTEM_USER

    # A tablespace the administrator made, where the loader may not CREATE; the schema it may.
    location = tmp_path / "grants_space"
    location.mkdir()
    tmp_path.chmod(0o711)  # the server's own system user must reach the folder
    entry = pwd.getpwnam(SYSTEM_USER)
    os.chown(location, entry.pw_uid, entry.pw_gid)
    with cluster.targets.connect() as admin:
        admin.execute(f"CREATE TABLESPACE grants_space LOCATION '{location}'")
    try:
        with company.env() as conn:
            conn.execute(f"GRANT CREATE ON SCHEMA app TO {company.loader.user}")
            conn.execute("CREATE INDEX events_account ON app.events (account_id) TABLESPACE grants_space")
        before = definitions(company)
        report = company.load(company.folder, rebuild_min_rows=0)
        assert set(report.fallback_tables) == {"app.events"}
        assert "tablespace grants_space" in report.fallback_tables["app.events"]
        assert 'GRANT CREATE ON TABLESPACE "grants_space"' in report.fallback_tables["app.events"]
        # app.accounts' unique email is rebuilt; its key stays, because app.events' foreign key,
        # kept in place with its table, needs it.
        assert report.indexes_rebuilt == 1
        assert definitions(company) == before
    finally:
        with company.env() as conn:
            conn.execute("DROP INDEX IF EXISTS app.events_account")
            conn.execute(f"REVOKE CREATE ON SCHEMA app FROM {company.loader.user}")
        with cluster.targets.connect() as admin:
            admin.execute("DROP TABLESPACE IF EXISTS grants_space")
