import pytest

from replication.engine.pg.catalog import (
    TableRef,
    foreign_key_order,
    foreign_key_parents,
    list_tables,
    select_tables,
)
from replication.engine.pg.sequences import owned_sequences
from replication.engine.errors import TableSelectionError

ALL = [TableRef("Ops", "Audit Log"), TableRef("shop", "customers"), TableRef("shop", "order_items"),
       TableRef("shop", "orders"), TableRef("shop", "products")]


def test_lists_ordinary_and_partitioned_tables_but_not_partitions(cluster):
    with cluster.connect("prod") as conn:
        assert list_tables(conn) == ALL


def test_include_exclude_and_globs():
    assert select_tables(ALL, ["shop.*"], ["order*"]) == [TableRef("shop", "customers"), TableRef("shop", "products")]
    assert select_tables(ALL, ["customers", "Ops.Audit Log"], []) == [TableRef("Ops", "Audit Log"), TableRef("shop", "customers")]
    assert select_tables(ALL, [], ["Ops.*"]) == ALL[1:]


def test_unknown_table_names_it_and_lists_what_exists():
    with pytest.raises(TableSelectionError, match=r"'shop.invoices'.*Tables available: Ops.Audit Log, shop.customers"):
        select_tables(ALL, ["shop.customers", "shop.invoices"], [])


def test_selecting_nothing_is_an_error():
    with pytest.raises(TableSelectionError, match="matches no table"):
        select_tables(ALL, [], ["*"])


def test_foreign_key_order_puts_referenced_tables_first(cluster):
    with cluster.connect("dev") as conn:
        order, cyclic = foreign_key_order(foreign_key_parents(conn, ALL))
    assert not cyclic
    position = {t.name: i for i, t in enumerate(order)}
    assert position["customers"] < position["orders"] < position["order_items"]
    assert position["products"] < position["order_items"]
    assert position["customers"] < position["Audit Log"]


def test_cycle_is_reported():
    a, b = TableRef("s", "a"), TableRef("s", "b")
    order, cyclic = foreign_key_order({a: {b}, b: {a}})
    assert cyclic and sorted(order) == [a, b]


def test_owned_sequences_cover_identity_and_serial(cluster):
    tables = [TableRef("shop", "customers"), TableRef("shop", "products"), TableRef("Ops", "Audit Log"),
              TableRef("shop", "orders")]
    with cluster.connect("prod") as conn:
        found = owned_sequences(conn, tables)
    assert [(s.table.name, s.column) for s in found] == [
        ("customers", "id"), ("products", "id"), ("Audit Log", "Event ID"), ("orders", "id")]


SIZED = """
CREATE SCHEMA sized;
CREATE TABLE sized.plain (id int PRIMARY KEY, label text);
INSERT INTO sized.plain SELECT g, 'label ' || g FROM generate_series(1, 20000) g;
CREATE TABLE sized.parted (id int, at date, payload text) PARTITION BY RANGE (at);
CREATE TABLE sized.parted_2024 PARTITION OF sized.parted FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE sized.parted_rest PARTITION OF sized.parted DEFAULT PARTITION BY HASH (id);
CREATE TABLE sized.parted_rest_0 PARTITION OF sized.parted_rest FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE sized.parted_rest_1 PARTITION OF sized.parted_rest FOR VALUES WITH (MODULUS 2, REMAINDER 1);
INSERT INTO sized.parted SELECT g, date '2023-06-01' + (g % 900), repeat('p', 40) FROM generate_series(1, 30000) g;
CREATE TABLE sized.blobs (id int PRIMARY KEY, body bytea);
INSERT INTO sized.blobs SELECT n, (SELECT string_agg(sha256(int8send(n * 1000000 + g)), '') FROM generate_series(1, 65536) g)
FROM generate_series(1, 6) n;
CREATE TABLE sized.parent (id int, note text);
CREATE TABLE sized.child (extra int) INHERITS (sized.parent);
INSERT INTO sized.parent SELECT g, 'parent' FROM generate_series(1, 1000) g;
INSERT INTO sized.child SELECT g, 'child', g FROM generate_series(1, 50000) g;
GRANT USAGE ON SCHEMA sized TO prod_reader; GRANT SELECT ON ALL TABLES IN SCHEMA sized TO prod_reader;
"""
# The oracle, computed another way: every leaf's total size less its indexes.
LEAF_SIZES = """
WITH RECURSIVE leaves(root, oid) AS (
    SELECT c.oid, c.oid FROM pg_class c WHERE c.oid = %s::regclass
    UNION ALL
    SELECT l.root, i.inhrelid FROM leaves l JOIN pg_inherits i ON i.inhparent = l.oid
    WHERE (SELECT relkind FROM pg_class WHERE oid = l.oid) = 'p'
)
SELECT sum(pg_total_relation_size(oid) - pg_indexes_size(oid))::bigint FROM leaves
"""


def test_table_sizes_count_every_leaf_and_its_toast_like_pg_total_relation_size(cluster, tmp_path):
    from replication.engine.pg.catalog import table_sizes
    from replication.engine.snapshot.retention import estimate_from_catalog

    from ...helpers import role_connection, snapshot

    tables = [TableRef("sized", name) for name in ("plain", "parted", "blobs", "parent")]
    with cluster.altered("prod", SIZED, "DROP SCHEMA sized CASCADE"):
        with role_connection(cluster, "prod") as conn:
            sizes = table_sizes(conn, tables)
        with cluster.connect("prod") as conn:
            conn.execute("ANALYZE")
            expected = {t: conn.execute(LEAF_SIZES, (t.ident.as_string(conn),)).fetchone()[0] for t in tables}
            child = conn.execute("SELECT pg_table_size('sized.child')").fetchone()[0]
        manifest = snapshot(cluster, tmp_path / "s", include=["sized.plain", "sized.parted", "sized.blobs", "sized.parent"])
    print(f"\nsizes: { {t.name: (s.bytes, s.toast_bytes) for t, s in sizes.items()} }; pg_total_relation_size less "
          f"indexes: { {t.name: v for t, v in expected.items()} }")
    assert {t: s.bytes for t, s in sizes.items()} == expected
    assert sizes[TableRef("sized", "parted")].bytes > 1_000_000  # its leaves, two levels down
    assert sizes[TableRef("sized", "blobs")].toast_bytes >= 12 * 2**20  # six values of 2 MiB, out of line
    assert sizes[TableRef("sized", "parent")].bytes < child  # an inheritance child is its own table
    # The guard's estimate covers what the snapshot really wrote: bytea prints as hex, twice its size.
    written = sum(t.bytes for t in manifest.tables)
    estimate = estimate_from_catalog(sizes.values()).needed
    print(f"written {written:,} bytes, estimated {estimate:,}")
    assert written <= estimate < 4 * written
