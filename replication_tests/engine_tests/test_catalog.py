import pytest

from replication.engine.catalog import (
    TableRef,
    foreign_key_order,
    foreign_key_parents,
    list_tables,
    owned_sequences,
    select_tables,
)
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
    with cluster.connect("prod") as conn:
        assert [s.column for s in owned_sequences(conn, TableRef("shop", "customers"))] == ["id"]
        assert [s.column for s in owned_sequences(conn, TableRef("shop", "products"))] == ["id"]
        assert [s.column for s in owned_sequences(conn, TableRef("Ops", "Audit Log"))] == ["Event ID"]
