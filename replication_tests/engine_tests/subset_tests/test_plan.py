"""Subsets on real PostgreSQL: every hard case of the schema, against a closure computed here from production's rows."""

from __future__ import annotations

import hashlib

import pytest

from replication.engine.errors import ConfigurationError
from replication.engine.privacy.mask import MaskRule
from replication.engine.subset.plan import DEFAULT_SUBSET_KEY, SubsetRule

from ...company import build_company

SCHEMA = """
CREATE SCHEMA shop;
CREATE TABLE shop.countries (code text PRIMARY KEY, name text);
CREATE TABLE shop.customers (id integer PRIMARY KEY, email text UNIQUE, country text REFERENCES shop.countries,
    referred_by integer REFERENCES shop.customers);                        -- a self-reference, nullable
CREATE TABLE shop.warehouses (id integer PRIMARY KEY, city text);          -- outside the selection
CREATE TABLE shop.products (id integer PRIMARY KEY, name text);
CREATE TABLE shop.orders (id integer PRIMARY KEY, customer_id integer NOT NULL REFERENCES shop.customers,
    gift_for integer REFERENCES shop.customers,                             -- nullable: NULL needs no parent
    warehouse_id integer REFERENCES shop.warehouses, created_at date NOT NULL);
CREATE TABLE shop.order_items (order_id integer REFERENCES shop.orders, line integer,
    product_id integer NOT NULL REFERENCES shop.products, PRIMARY KEY (order_id, line));
CREATE TABLE shop.shipments (id integer PRIMARY KEY, order_id integer, line integer,
    FOREIGN KEY (order_id, line) REFERENCES shop.order_items);              -- a composite foreign key
CREATE TABLE shop.newsletter (email text REFERENCES shop.customers (email), topic text);   -- no primary key
CREATE TABLE shop.events (customer_id integer NOT NULL REFERENCES shop.customers, at date NOT NULL, kind text)
    PARTITION BY RANGE (at);
CREATE TABLE shop.events_2025 PARTITION OF shop.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE shop.events_2026 PARTITION OF shop.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE SCHEMA org;
CREATE TABLE org.teams (id integer PRIMARY KEY, name text, lead_id integer);   -- teams and members: a cycle
CREATE TABLE org.members (id integer PRIMARY KEY, team_id integer NOT NULL REFERENCES org.teams, name text);
ALTER TABLE org.teams ADD FOREIGN KEY (lead_id) REFERENCES org.members;
CREATE TABLE org.employees (id integer PRIMARY KEY, manager_id integer REFERENCES org.employees, dept text);
"""
DATA = """
INSERT INTO shop.countries SELECT 'C' || g, 'Country ' || g FROM generate_series(1, 20) g;
INSERT INTO shop.customers SELECT g, 'c' || g || '@example.org', 'C' || (g % 20 + 1),
    CASE WHEN g > 10 AND g % 3 = 0 THEN g / 3 END FROM generate_series(1, 400) g;
INSERT INTO shop.warehouses SELECT g, 'City ' || g FROM generate_series(1, 5) g;
INSERT INTO shop.products SELECT g, 'P' || g FROM generate_series(1, 50) g;
INSERT INTO shop.orders SELECT g, g % 400 + 1, CASE WHEN g % 7 = 0 THEN (g * 13) % 400 + 1 END, g % 5 + 1,
    date '2026-01-01' + (g % 300) FROM generate_series(1, 1200) g;
INSERT INTO shop.order_items SELECT o, l, (o * l) % 50 + 1 FROM generate_series(1, 1200) o, generate_series(1, 3) l;
INSERT INTO shop.shipments SELECT row_number() OVER (), order_id, line FROM shop.order_items WHERE line = 2;
INSERT INTO shop.newsletter SELECT email, 'topic ' || id % 4 FROM shop.customers WHERE id % 2 = 0;
INSERT INTO shop.events SELECT g % 400 + 1, date '2025-06-01' + (g % 400), 'k' || g % 3 FROM generate_series(1, 2000) g;
INSERT INTO org.teams SELECT g, 'Team ' || g, NULL FROM generate_series(1, 12) g;
INSERT INTO org.members SELECT g, g % 12 + 1, 'M' || g FROM generate_series(1, 120) g;
UPDATE org.teams SET lead_id = (id * 7) % 120 + 1;                 -- a lead is often in another team
INSERT INTO org.employees SELECT g, CASE WHEN g > 1 THEN g / 2 END,
    (ARRAY['sales', 'ops', 'eng'])[g % 3 + 1] FROM generate_series(1, 200) g;
"""
KEY = "subset-test-key"


def subset_company(cluster, name: str, data: str = DATA):
    """The schema above as production and a Dev that has warehouses of its own (never copied)."""
    company = build_company(cluster, name, SCHEMA, data)
    with company.env() as conn:
        conn.execute("INSERT INTO shop.warehouses SELECT g, 'Env city ' || g FROM generate_series(1, 5) g")
    return company


def subset_snapshot(company, tmp_path_factory):
    directory = tmp_path_factory.mktemp(company.name) / "prod_snapshot_20261125"
    company.snapshot(directory, exclude=["shop.warehouses"])
    return directory


@pytest.fixture(scope="module")
def company(cluster):
    return subset_company(cluster, "subsets")


@pytest.fixture(scope="module")
def snapshot_dir(company, tmp_path_factory):
    return subset_snapshot(company, tmp_path_factory)


def chosen(key: str, table: str, pk_text: str, percent: float) -> bool:
    digest = hashlib.sha256(f"{key}\x1f{table}\x1f{pk_text}".encode()).hexdigest()
    return int(digest[:8], 16) < int(percent / 100 * 2 ** 32)


class Reference:
    """The subset's closure computed here, row by row, from production's rows and foreign keys."""

    def __init__(self, conn):
        self.rows: dict[str, list[dict]] = {}
        for table in ("shop.countries", "shop.customers", "shop.products", "shop.orders", "shop.order_items",
                      "shop.shipments", "shop.newsletter", "shop.events", "org.teams", "org.members", "org.employees"):
            cur = conn.execute(f"SELECT * FROM {table}")
            names = [d.name for d in cur.description]
            self.rows[table] = [dict(zip(names, r)) for r in cur.fetchall()]
        # (child, child columns, parent, parent columns)
        self.edges = [
            ("shop.customers", ("country",), "shop.countries", ("code",)),
            ("shop.customers", ("referred_by",), "shop.customers", ("id",)),
            ("shop.orders", ("customer_id",), "shop.customers", ("id",)),
            ("shop.orders", ("gift_for",), "shop.customers", ("id",)),
            ("shop.order_items", ("order_id",), "shop.orders", ("id",)),
            ("shop.order_items", ("product_id",), "shop.products", ("id",)),
            ("shop.shipments", ("order_id", "line"), "shop.order_items", ("order_id", "line")),
            ("shop.newsletter", ("email",), "shop.customers", ("email",)),
            ("shop.events", ("customer_id",), "shop.customers", ("id",)),
            ("org.members", ("team_id",), "org.teams", ("id",)),
            ("org.teams", ("lead_id",), "org.members", ("id",)),
            ("org.employees", ("manager_id",), "org.employees", ("id",)),
        ]

    def closure(self, roots: dict[str, callable]) -> dict[str, set[int]]:
        """Row indexes kept per table; tables no root leads to keep every row."""
        downstream = set(roots)
        while True:
            more = {c for c, _, p, _ in self.edges if p in downstream} - downstream
            if not more:
                break
            downstream |= more
        selected = {t: {i for i, r in enumerate(self.rows[t]) if roots[t](r)} if t in roots else set()
                    for t in downstream}
        changed = True
        while changed:
            changed = False
            for child, cc, parent, pc in self.edges:
                if child in downstream and parent in downstream:
                    keys = {tuple(self.rows[parent][i][c] for c in pc) for i in selected[parent]}
                    for i, r in enumerate(self.rows[child]):
                        if i not in selected[child] and tuple(r[c] for c in cc) in keys:
                            selected[child].add(i)
                            changed = True
        kept = {t: set(s) for t, s in selected.items()}
        changed = True
        while changed:
            changed = False
            for child, cc, parent, pc in self.edges:
                if child in downstream and parent in downstream:
                    needed = {tuple(self.rows[child][i][c] for c in cc) for i in kept[child]}
                    for i, r in enumerate(self.rows[parent]):
                        if i not in kept[parent] and tuple(r[c] for c in pc) in needed:
                            kept[parent].add(i)
                            changed = True
        return {t: kept.get(t, set(range(len(self.rows[t])))) for t in self.rows}

    def counts(self, kept: dict[str, set[int]]) -> dict[str, int]:
        return {t: len(s) for t, s in kept.items()}


def table_counts(conn) -> dict[str, int]:
    return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in (
        "shop.countries", "shop.customers", "shop.products", "shop.orders", "shop.order_items", "shop.shipments",
        "shop.newsletter", "shop.events", "org.teams", "org.members", "org.employees")}


def test_five_percent_of_customers_keeps_what_belongs_to_them_and_every_parent(company, snapshot_dir):
    report = company.load(snapshot_dir, subset={"shop.customers": SubsetRule(percent=5)}, masking_key=KEY)
    with company.prod() as prod:
        reference = Reference(prod)
    kept = reference.closure({"shop.customers": lambda r: chosen(KEY, "shop.customers", f"({r['id']})", 5)})
    with company.env() as env:
        assert table_counts(env) == reference.counts(kept)
        kept_ids = {reference.rows["shop.customers"][i]["id"] for i in kept["shop.customers"]}
        assert {r[0] for r in env.execute("SELECT id FROM shop.customers").fetchall()} == kept_ids
    rows = reference.counts(kept)
    assert 0 < rows["shop.customers"] < 400 and 0 < rows["shop.orders"] < 1200
    assert rows["shop.products"] == 50 and rows["org.employees"] == 200  # not downstream of a root: whole
    assert report.subset_rows["shop.customers"] == [rows["shop.customers"], 400]
    assert set(report.subset_rows) == {"shop.customers", "shop.orders", "shop.order_items", "shop.shipments",
                                       "shop.newsletter", "shop.events"}
    print({t: f"{k} of {n}" for t, (k, n) in report.subset_rows.items()})


def load_and_compare(company, snapshot_dir, rules: dict[str, SubsetRule], roots, **kwargs):
    report = company.load(snapshot_dir, subset=rules, masking_key=KEY, **kwargs)
    with company.prod() as prod:
        reference = Reference(prod)
    kept = reference.closure(roots)
    with company.env() as env:
        assert table_counts(env) == reference.counts(kept)
    return report, reference, kept


def test_two_roots_reaching_the_same_table_keep_the_union_and_its_parents(company, snapshot_dir):
    rules = {"shop.customers": SubsetRule(percent=5), "shop.products": SubsetRule(where="id <= 3 AND name LIKE 'P%'")}
    report, reference, kept = load_and_compare(company, snapshot_dir, rules, {
        "shop.customers": lambda r: chosen(KEY, "shop.customers", f"({r['id']})", 5),
        "shop.products": lambda r: r["id"] <= 3})
    # Items of the three products come with their orders, and those orders' customers as parents.
    items = [reference.rows["shop.order_items"][i] for i in kept["shop.order_items"]]
    assert {r["product_id"] for r in items} > {1, 2, 3}
    assert report.subset_rows["shop.products"][0] > 3  # pulled in as parents of kept items


def test_self_reference_root_follows_reports_and_pulls_in_managers(company, snapshot_dir):
    report, reference, kept = load_and_compare(
        company, snapshot_dir, {"org.employees": SubsetRule(where="dept = 'sales' AND id > 100")},
        {"org.employees": lambda r: r["dept"] == "sales" and r["id"] > 100})
    depts = {reference.rows["org.employees"][i]["dept"] for i in kept["org.employees"]}
    assert depts == {"sales", "ops", "eng"}  # managers up the chain are kept as parents
    assert report.subset_rows["org.employees"][1] == 200


def test_a_cycle_across_tables_settles(company, snapshot_dir):
    report, reference, kept = load_and_compare(
        company, snapshot_dir, {"org.teams": SubsetRule(where="id = 1")}, {"org.teams": lambda r: r["id"] == 1})
    assert 1 <= report.subset_rows["org.teams"][0] < 12
    assert report.subset_rows["org.members"][0] < 120


def test_subset_with_masking_keeps_masked_keys_joined(company, snapshot_dir):
    masks = {"shop.customers": {"email": MaskRule("hash")}, "shop.newsletter": {"email": MaskRule("hash")}}
    report, reference, kept = load_and_compare(
        company, snapshot_dir, {"shop.customers": SubsetRule(percent=20)},
        {"shop.customers": lambda r: chosen(KEY, "shop.customers", f"({r['id']})", 20)}, masks=masks)
    with company.env() as env:
        emails = [r[0] for r in env.execute("SELECT email FROM shop.newsletter").fetchall()]
        joined = env.execute("SELECT count(*) FROM shop.newsletter n JOIN shop.customers c USING (email)").fetchone()[0]
    assert emails and not [e for e in emails if e.endswith("@example.org")]
    assert joined == len(emails) == report.subset_rows["shop.newsletter"][0]
    assert report.mask_overlaps["shop.customers.email"][1] == 0


def test_percent_is_the_same_rows_every_time_and_changes_with_the_key(company, snapshot_dir):
    def customers(key):
        company.load(snapshot_dir, subset={"shop.customers": SubsetRule(percent=10)}, masking_key=key)
        with company.env() as env:
            return {r[0] for r in env.execute("SELECT id FROM shop.customers").fetchall()}

    assert customers(KEY) == customers(KEY)
    assert customers(KEY) != customers(None)  # no MASKING_KEY: the documented constant
    company.load(snapshot_dir, subset={"shop.customers": SubsetRule(percent=10)}, masking_key=None)
    with company.prod() as prod:
        reference = Reference(prod)
    kept = reference.closure({"shop.customers": lambda r: chosen(DEFAULT_SUBSET_KEY, "shop.customers", f"({r['id']})", 10)})
    with company.env() as env:
        assert table_counts(env) == reference.counts(kept)


@pytest.mark.parametrize("rules, message", [
    ({"shop.newsletter": SubsetRule(percent=5)},
     "dev: subset shop.newsletter: percent needs a primary key to choose rows by, and shop.newsletter has none"),
    ({"shop.orders": SubsetRule(where="created_on > now()")},
     "dev: subset shop.orders: where 'created_on > now()' is not valid on shop.orders: column \"created_on\" does not exist"),
    ({"shop.orders": SubsetRule(where="true); DROP TABLE shop.products; SELECT (1")},
     "dev: subset shop.orders: where 'true); DROP TABLE shop.products; SELECT (1' is not valid on shop.orders"),
    ({"shop.warehouses": SubsetRule(percent=5)}, "dev: subset names shop.warehouses, which the snapshot does not hold"),
])
def test_a_bad_rule_is_refused_before_anything_is_written(company, snapshot_dir, rules, message):
    company.load(snapshot_dir)
    with company.env() as env:
        before = table_counts(env)
    with pytest.raises(ConfigurationError, match="Nothing was written") as error:
        company.load(snapshot_dir, subset=rules, masking_key=KEY)
    assert message in str(error.value)
    with company.env() as env:
        assert table_counts(env) == before
        assert env.execute("SELECT to_regclass('shop.products')").fetchone()[0] is not None


def test_a_table_whose_type_differs_in_the_target_is_staged_typed_and_checked_against_production(company, snapshot_dir):
    """Text staging relies on production's types; a column typed otherwise in the target takes the
    typed path, where the staged table is compared with production's checksum."""
    from replication.engine.load import plan_load
    from replication.engine.snapshot.verify import verify_snapshot

    with company.env() as env:
        env.execute("ALTER TABLE shop.newsletter ALTER COLUMN topic TYPE varchar(40)")
    try:
        with company.loader_connection() as conn:
            plan = plan_load(conn, verify_snapshot(snapshot_dir), "dev", {}, None,
                             {"shop.customers": SubsetRule(percent=5)}).subset
        staged_as_text = {t.key for t in plan.as_text}
        assert "shop.customers" in staged_as_text and "shop.newsletter" not in staged_as_text
        report, _, _ = load_and_compare(company, snapshot_dir, {"shop.customers": SubsetRule(percent=5)},
                                        {"shop.customers": lambda r: chosen(KEY, "shop.customers", f"({r['id']})", 5)})
        assert all(t.checksum_verified for t in report.tables)
    finally:
        with company.env() as env:
            env.execute("ALTER TABLE shop.newsletter ALTER COLUMN topic TYPE text")
