"""Content checksums: every value counts, row order does not, and prod and a target agree."""

from contextlib import contextmanager

from replication.engine.pg.catalog import TableRef
from replication.engine.verify.checksum import HASH64, MD5_TEXT, checksum_algorithm, content_checksum, content_checksums

# One column of each kind the checksum treats differently: hashed by value (scalars, arrays,
# domains, jsonb, text), hashed by text (json, money, point, enum, range, composite).
SCHEMA = """
CREATE SCHEMA ck;
CREATE TYPE ck.mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE ck.pair AS (a int, b text);
CREATE DOMAIN ck.code AS text CHECK (VALUE <> '');
CREATE DOMAIN ck.ints AS int4[];
CREATE TABLE ck.t (
    id int, n numeric, f float8, b bool, s text, c ck.code, tags text[], nums ck.ints, doc jsonb,
    raw json, x money, p point, m ck.mood, r int4range, pr ck.pair, at timestamptz, d interval,
    u uuid, bin bytea, ip inet
);
INSERT INTO ck.t VALUES
  (1, 1.5, 0.1, true, 'Alpha', 'A1', '{x,y}', '{1,2}', '{"k": [1, 2]}', '{"k": 1}', '1.50',
   '(1,2)', 'ok', '[1,5)', '(1,p)', '2024-01-02 03:04:05+00', '1 day', gen_random_uuid(), '\\x00ff', '10.0.0.1'),
  (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (3, -2, -0.5, false, 'beta', 'B2', '{}', '{}', '[]', '[]', '0', '(0,0)', 'sad', 'empty', '(2,q)',
   '1999-12-31 23:59:59+00', '-3 hours', gen_random_uuid(), '\\x', '::1');
"""
COLUMNS = ["id", "n", "f", "b", "s", "c", "tags", "nums", "doc", "raw", "x", "p", "m", "r", "pr", "at", "d", "u", "bin", "ip"]
CHANGES = {
    "n": "1.25", "f": "0.2", "b": "false", "s": "'alpha'", "c": "'A2'", "tags": "'{y,x}'", "nums": "'{2,1}'",
    "doc": "'{\"k\": [2, 1]}'", "raw": "'{\"k\": 2}'", "x": "'1.51'", "p": "'(2,1)'", "m": "'happy'",
    "r": "'[1,6)'", "pr": "'(1,q)'", "at": "'2024-01-02 03:04:06+00'", "d": "'2 days'",
    "u": "gen_random_uuid()", "bin": "'\\x00fe'", "ip": "'10.0.0.2'",
}
TABLE = TableRef("ck", "t")


@contextmanager
def checksum_table(cluster, database: str, before: str = ""):
    with cluster.connect(database) as conn:
        conn.execute(before + SCHEMA)
        conn.commit()
        try:
            yield conn
        finally:
            conn.rollback()
            conn.execute("DROP SCHEMA ck CASCADE")
            conn.commit()


def test_every_column_type_counts_and_row_order_does_not(cluster):
    with checksum_table(cluster, "dev") as conn:
        rows, first = content_checksum(conn, TABLE, COLUMNS)
        assert rows == 3 and checksum_algorithm(first) == HASH64
        for column, value in CHANGES.items():
            with conn.transaction(force_rollback=True):
                conn.execute(f"UPDATE ck.t SET {column} = {value} WHERE id = 1")
                assert content_checksum(conn, TABLE, COLUMNS)[1] != first, column
            with conn.transaction(force_rollback=True):
                conn.execute(f"UPDATE ck.t SET {column} = NULL WHERE id = 1")
                assert content_checksum(conn, TABLE, COLUMNS)[1] != first, f"{column} to NULL"
        with conn.transaction(force_rollback=True):
            # Values moved from one column to another of the same type.
            conn.execute("UPDATE ck.t SET s = c, c = s WHERE id = 1")
            assert content_checksum(conn, TABLE, COLUMNS)[1] != first
        with conn.transaction(force_rollback=True):
            conn.execute("CREATE TEMP TABLE again AS SELECT * FROM ck.t ORDER BY id DESC")
            conn.execute("TRUNCATE ck.t")
            conn.execute("INSERT INTO ck.t SELECT * FROM again")
            assert content_checksum(conn, TABLE, COLUMNS)[1] == first


def test_duplicate_rows_do_not_cancel_out(cluster):
    with checksum_table(cluster, "dev") as conn:
        conn.execute("DELETE FROM ck.t WHERE id <> 1")
        conn.execute("INSERT INTO ck.t SELECT * FROM ck.t")
        two_of_one = content_checksum(conn, TABLE, ["id", "s"])
        conn.execute("UPDATE ck.t SET s = 'other'")
        assert content_checksum(conn, TABLE, ["id", "s"]) != two_of_one


def test_same_data_in_databases_with_different_oids_agrees(cluster):
    """Enums hash by OID on the server; the checksum hashes their labels, so prod and a target agree."""
    with checksum_table(cluster, "prod") as prod, \
            checksum_table(cluster, "qa", before="CREATE TYPE public.shift AS ENUM ('a'); DROP TYPE public.shift;") as qa:
        qa.execute("DELETE FROM ck.t")
        qa.execute("INSERT INTO ck.t (id, m) VALUES (1, 'ok'), (3, 'sad')")
        prod.execute("DELETE FROM ck.t WHERE id = 2")
        prod.execute("UPDATE ck.t SET n = NULL, f = NULL, b = NULL, s = NULL, c = NULL, tags = NULL, nums = NULL, "
                     "doc = NULL, raw = NULL, x = NULL, p = NULL, r = NULL, pr = NULL, at = NULL, d = NULL, u = NULL, "
                     "bin = NULL, ip = NULL")
        oids = [conn.execute("SELECT 'ck.mood'::regtype::oid").fetchone()[0] for conn in (prod, qa)]
        assert oids[0] != oids[1]
        assert content_checksum(prod, TABLE, COLUMNS) == content_checksum(qa, TABLE, COLUMNS)


def test_checksums_made_the_first_way_are_still_computed_the_same_way(cluster):
    with checksum_table(cluster, "dev") as conn:
        legacy = content_checksum(conn, TABLE, COLUMNS, algorithm=MD5_TEXT)
        assert checksum_algorithm(legacy[1]) == MD5_TEXT and legacy[1].startswith("3:")
        assert checksum_algorithm("") == HASH64  # a snapshot without checksums: nothing to match
        assert content_checksum(conn, TABLE, COLUMNS, algorithm=checksum_algorithm(legacy[1])) == legacy


def test_several_column_sets_in_one_read_match_one_at_a_time(cluster):
    with checksum_table(cluster, "dev") as conn:
        sets = [COLUMNS, ["s", "m"], []]
        for algorithm in (HASH64, MD5_TEXT):
            together = content_checksums(conn, TABLE, sets, algorithm=algorithm)
            assert together == [content_checksum(conn, TABLE, columns, algorithm=algorithm) for columns in sets]
        assert len({checksum for _, checksum in content_checksums(conn, TABLE, sets)}) == 3
