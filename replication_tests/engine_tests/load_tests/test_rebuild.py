"""Loads in pg_restore's order put every key, index, foreign key and trigger back exactly.

The `cases` schema holds what breaks naive drop-and-recreate code: a partitioned table with a
partition index under its own name, a foreign key to a partitioned table, self-referencing and
cyclic foreign keys, a NOT VALID one, expression, partial and exclusion indexes, a constraint
trigger, a table the loader does not own, a foreign key from a table outside the selection and a
materialized view over a loaded table.
"""

import psycopg
import pytest

from replication.engine.pg.catalog import TableRef
from replication.engine.load import load_snapshot
from replication.engine.load.rebuild import take_off
from replication.engine.snapshot.verify import verify_snapshot

from ...helpers import load, role_connection, snapshot

CASES_SQL = """
CREATE SCHEMA cases;
CREATE TABLE cases.events (id bigint NOT NULL, at date NOT NULL, kind text, PRIMARY KEY (id, at))
    PARTITION BY RANGE (at);
CREATE TABLE cases.events_a PARTITION OF cases.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE cases.events_b PARTITION OF cases.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE INDEX events_b_own_name ON cases.events_b (kind);
CREATE INDEX events_kind_idx ON cases.events (kind);
CREATE TABLE cases.event_notes (id serial PRIMARY KEY, event_id bigint NOT NULL, at date NOT NULL, note text,
    CONSTRAINT notes_event_fk FOREIGN KEY (event_id, at) REFERENCES cases.events (id, at));
CREATE TABLE cases.nodes (id integer PRIMARY KEY, parent_id integer REFERENCES cases.nodes (id)
    DEFERRABLE INITIALLY DEFERRED, name text UNIQUE);
CREATE INDEX nodes_lower_name ON cases.nodes (lower(name)) WHERE parent_id IS NOT NULL;
COMMENT ON INDEX cases.nodes_lower_name IS 'partial, on an expression';
CREATE TABLE cases.cycle_a (id integer PRIMARY KEY, b_id integer);
CREATE TABLE cases.cycle_b (id integer PRIMARY KEY, a_id integer REFERENCES cases.cycle_a (id));
ALTER TABLE cases.cycle_a ADD CONSTRAINT cycle_a_b_fk FOREIGN KEY (b_id) REFERENCES cases.cycle_b (id)
    DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE cases.event_notes ADD CONSTRAINT notes_node_nv FOREIGN KEY (id) REFERENCES cases.nodes (id) NOT VALID;
CREATE TABLE cases.bookings (id integer PRIMARY KEY, during tsrange, EXCLUDE USING gist (during WITH &&));
"""
DATA_SQL = """
INSERT INTO cases.events SELECT g, date '2024-06-01' + (g % 400), 'k' || g % 7 FROM generate_series(1, 3000) g;
INSERT INTO cases.nodes VALUES (1, NULL, 'root');
INSERT INTO cases.nodes SELECT g, 1 + g / 10, 'Node ' || g FROM generate_series(2, 2000) g;
INSERT INTO cases.event_notes (event_id, at, note) SELECT id, at, 'n' FROM cases.events WHERE id % 3 = 0;
INSERT INTO cases.cycle_a VALUES (1, NULL), (2, NULL);
INSERT INTO cases.cycle_b VALUES (1, 2), (2, 1);
UPDATE cases.cycle_a SET b_id = 3 - id;
INSERT INTO cases.bookings SELECT g, tsrange(timestamp '2024-01-01' + g * interval '1 hour',
    timestamp '2024-01-01' + (g + 1) * interval '1 hour') FROM generate_series(1, 500) g;
"""
# Only in Dev: what the environment's own migrations add around the replicated tables.
TARGET_EXTRAS_SQL = """
INSERT INTO cases.nodes VALUES (1, NULL, 'root'), (1500, 1, 'Node 1500');
CREATE FUNCTION cases.refuse() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'constraint trigger fired'; END $$;
CREATE CONSTRAINT TRIGGER nodes_guard AFTER INSERT ON cases.nodes DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION cases.refuse();
CREATE TABLE cases.outside (id integer PRIMARY KEY, node_id integer CONSTRAINT outside_node_fk REFERENCES cases.nodes (id));
INSERT INTO cases.outside VALUES (1, 1), (2, 1500);
CREATE MATERIALIZED VIEW cases.node_count AS SELECT count(*) AS nodes FROM cases.nodes;
"""
# Owned by the superuser, not the loader: loaded with its indexes in place.
NOT_OWNED_SQL = """
CREATE TABLE cases.not_mine (id integer PRIMARY KEY, label text);
CREATE INDEX not_mine_label ON cases.not_mine (label);
GRANT USAGE ON SCHEMA cases TO {role};
GRANT SELECT, INSERT, TRUNCATE ON cases.not_mine TO {role};
"""
CATALOG_SQL = """
SELECT 'constraint', conrelid::regclass::text, conname,
       pg_get_constraintdef(oid) || ' deferrable=' || condeferrable || ' deferred=' || condeferred
       || ' valid=' || convalidated || ' parent=' || coalesce((SELECT p.conname FROM pg_constraint p WHERE p.oid = k.conparentid), '-')
FROM pg_constraint k WHERE connamespace = 'cases'::regnamespace
UNION ALL
SELECT 'index', indrelid::regclass::text, indexrelid::regclass::text,
       pg_get_indexdef(indexrelid) || ' valid=' || indisvalid || ' parent='
       || coalesce((SELECT h.inhparent::regclass::text FROM pg_inherits h WHERE h.inhrelid = indexrelid), '-')
       || ' comment=' || coalesce(obj_description(indexrelid, 'pg_class'), '-')
FROM pg_index WHERE indrelid::regclass::text LIKE 'cases.%'
UNION ALL
SELECT 'trigger', tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) || ' enabled=' || tgenabled::text
FROM pg_trigger WHERE tgrelid::regclass::text LIKE 'cases.%' AND NOT tgisinternal
ORDER BY 1, 2, 3
"""
TABLES = ["cases.events", "cases.event_notes", "cases.nodes", "cases.cycle_a", "cases.cycle_b", "cases.bookings",
          "cases.not_mine"]


def catalog(cluster, name: str) -> list[tuple]:
    with cluster.connect(name) as conn:
        conn.execute("SET search_path = pg_catalog")
        return conn.execute(CATALOG_SQL).fetchall()


@pytest.fixture(scope="module")
def cases(cluster, tmp_path_factory):
    """The cases schema in prod (with data) and in Dev (created by its loader role), and a snapshot."""
    loader = cluster.accounts["dev"].user
    reader = cluster.accounts["prod"].user
    prod_sql = (CASES_SQL + NOT_OWNED_SQL.format(role=reader) + DATA_SQL
                + "INSERT INTO cases.not_mine SELECT g, 'l' || g FROM generate_series(1, 100) g;"
                + f"GRANT SELECT ON ALL TABLES IN SCHEMA cases TO {reader};"
                + f"GRANT SELECT ON ALL SEQUENCES IN SCHEMA cases TO {reader};")
    dev_sql = (f"SET ROLE {loader};" + CASES_SQL + TARGET_EXTRAS_SQL + "RESET ROLE;"
               + NOT_OWNED_SQL.format(role=loader))
    with cluster.altered("prod", prod_sql, "DROP SCHEMA cases CASCADE"), \
            cluster.altered("dev", dev_sql, "DROP SCHEMA cases CASCADE"):
        directory = tmp_path_factory.mktemp("cases") / "prod_snapshot_20261125"
        snapshot(cluster, directory, include=["cases.*"])
        yield directory


def test_every_definition_is_identical_after_a_load(cluster, cases):
    before = catalog(cluster, "dev")
    assert any(row[2] == "cases.events_b_own_name" for row in before)
    report = load(cluster, "dev", cases)
    assert catalog(cluster, "dev") == before
    assert report.indexes_rebuilt >= 10 and report.foreign_keys_readded >= 6
    assert all(t.checksum_verified for t in report.tables)
    prod = {k: v for k, v in cluster.fingerprints("prod").items() if k.startswith("cases.")}
    dev = cluster.fingerprints("dev")
    assert {k: dev[k] for k in prod} == prod


def test_a_table_the_loader_does_not_own_keeps_its_indexes_and_is_reported(cluster, cases):
    report = load(cluster, "dev", cases)
    assert set(report.fallback_tables) == {"cases.not_mine"}
    assert "not by the loading role" in report.fallback_tables["cases.not_mine"]
    lines = []
    with role_connection(cluster, "dev") as conn:
        load_snapshot(conn, cases, verify_snapshot(cases), environment="dev", log=lines.append)
    assert any("cases.not_mine" in line and "indexes, keys and foreign keys in place" in line for line in lines)


def test_constraint_triggers_do_not_fire_for_loaded_rows_and_stay_enabled(cluster, cases):
    load(cluster, "dev", cases)
    with cluster.connect("dev") as conn:
        assert conn.execute("SELECT tgenabled FROM pg_trigger WHERE tgname = 'nodes_guard'").fetchone() == ("O",)
        with pytest.raises(psycopg.errors.RaiseException, match="constraint trigger fired"):
            conn.execute("INSERT INTO cases.nodes VALUES (99999, 1, 'new')")


def test_materialized_view_shows_the_new_data_and_statistics_are_fresh(cluster, cases, tmp_path):
    with cluster.altered("prod", "DELETE FROM cases.nodes WHERE id > 1990",
                         "INSERT INTO cases.nodes SELECT g, 1 + g / 10, 'Node ' || g FROM generate_series(1991, 2000) g"):
        fewer = tmp_path / "prod_snapshot_20261124"
        snapshot(cluster, fewer, include=["cases.*"])
    for directory, expected in ((fewer, 1990), (cases, 2000)):
        report = load(cluster, "dev", directory)
        assert report.materialized_views_refreshed == ["cases.node_count"]
        with cluster.connect("dev") as conn:
            assert conn.execute("SELECT nodes FROM cases.node_count").fetchone() == (expected,)
            tuples, analyzed = conn.execute(
                "SELECT c.reltuples, s.last_analyze IS NOT NULL FROM pg_class c "
                "JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.oid = 'cases.nodes'::regclass").fetchone()
            assert tuples == expected and analyzed


def test_outside_table_referencing_a_row_gone_from_prod_rolls_the_load_back(cluster, cases, tmp_path):
    load(cluster, "dev", cases)
    before, fingerprints = catalog(cluster, "dev"), cluster.fingerprints("dev")
    # Dev's own table cases.outside references node 1500, which production no longer has.
    with cluster.altered("prod", "DELETE FROM cases.nodes WHERE id = 1500",
                         "INSERT INTO cases.nodes VALUES (1500, 151, 'Node 1500')"):
        gone = tmp_path / "prod_snapshot_20261126"
        snapshot(cluster, gone, include=["cases.*"])
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="outside_node_fk"):
        load(cluster, "dev", gone)
    assert catalog(cluster, "dev") == before
    assert cluster.fingerprints("dev") == fingerprints


def test_foreign_keys_touching_the_loaded_tables_are_all_taken_off(cluster, cases):
    with role_connection(cluster, "dev") as conn:
        with conn.transaction(force_rollback=True):
            taken = take_off(conn, [TableRef(*t.split(".")) for t in TABLES])
    # Self-referencing, cyclic, to a partitioned table, NOT VALID, and from a table outside the selection.
    assert {fk.name for fk in taken.foreign_keys} == {"notes_event_fk", "cycle_a_b_fk", "cycle_b_a_id_fkey",
                                                      "outside_node_fk", "notes_node_nv", "nodes_parent_id_fkey"}
    assert [t.name for t in taken.triggers] == ["nodes_guard"]
    events_pkey = next(tree for tree in taken.trees if tree[0].short_name == "events_pkey")
    assert [n.short_name for n in events_pkey] == ["events_pkey", "events_a_pkey", "events_b_pkey"]
