"""Masking on the target inside the load: every strategy, NULLs and edge values, keys that still join."""

import hashlib

import pytest

from replication.engine.errors import ConfigurationError, SchemaMismatchError
from replication.engine.privacy.mask import FIRST_NAMES, LAST_NAMES, MaskRule, looks_personal, suggested_rule

from ...helpers import load, snapshot

SCHEMA_SQL = """
CREATE SCHEMA masking;
CREATE DOMAIN masking.email AS text CHECK (VALUE LIKE '%_@_%');
CREATE TABLE masking.people (id integer PRIMARY KEY, email masking.email UNIQUE, full_name text, phone varchar(20),
    note text, tags text[], code varchar(8), born date, secret text, plan text);
CREATE TABLE masking.subscriptions (id integer PRIMARY KEY, email masking.email REFERENCES masking.people (email), plan text);
"""
DATA_SQL = r"""
INSERT INTO masking.people VALUES
 (1, 'ada@example.org', 'Ada Lovelace', '+44 20 7946 0001', E'line one\nline "two", 3', ARRAY['a,b', NULL, '', 'ünï'], 'ABC12345', '1815-12-10', 'topsecret', 'gold'),
 (2, 'zoë@example.org', 'Zoë Ünïcødé 日本語', '', '', '{}', '', NULL, '', 'free'),
 (3, 'o''brien@example.org', 'Conan O''Brien', NULL, NULL, NULL, NULL, '2000-02-29', NULL, NULL);
INSERT INTO masking.people SELECT g, 'user' || g || '@example.org', 'Person ' || g, '555-' || g, 'note ' || g,
    ARRAY['t' || g], 'C' || g, date '1990-01-01' + g, 's' || g, 'p' || g % 3 FROM generate_series(4, 300) g;
INSERT INTO masking.subscriptions SELECT g, email, 'plan ' || g FROM masking.people p, LATERAL (SELECT p.id AS g) x
    WHERE p.id % 2 = 1;
"""
RULES = {
    "masking.people": {
        "email": MaskRule("email"), "full_name": MaskRule("name"), "phone": MaskRule("phone"),
        "note": MaskRule("redact"), "tags": MaskRule("hash"), "code": MaskRule("hash"), "born": MaskRule("null"),
        "secret": MaskRule("sql", "left(secret, 1) || '***'"),
    },
    "masking.subscriptions": {"email": MaskRule("email")},
}
KEY = "test-masking-key-1"


def rows(cluster, name, query):
    with cluster.connect(name) as conn:
        return conn.execute(query).fetchall()


@pytest.fixture(scope="module")
def masked(cluster, tmp_path_factory):
    grant = "GRANT USAGE ON SCHEMA masking TO prod_reader; GRANT SELECT ON ALL TABLES IN SCHEMA masking TO prod_reader;"
    loader = cluster.accounts["dev"].user
    with cluster.altered("prod", SCHEMA_SQL + DATA_SQL + grant, "DROP SCHEMA masking CASCADE"), \
            cluster.altered("dev", f"SET ROLE {loader};" + SCHEMA_SQL + "RESET ROLE;", "DROP SCHEMA masking CASCADE"):
        directory = tmp_path_factory.mktemp("masking") / "prod_snapshot_20261125"
        snapshot(cluster, directory, include=["masking.*"])
        yield directory


def test_every_masked_value_differs_from_production_and_the_rest_is_exact(cluster, masked):
    report = load(cluster, "dev", masked, masks=RULES, masking_key=KEY)
    assert report.masked_columns["masking.people.email"] == "email"
    prod = {r[0]: r for r in rows(cluster, "prod", "SELECT * FROM masking.people ORDER BY id")}
    dev = {r[0]: r for r in rows(cluster, "dev", "SELECT * FROM masking.people ORDER BY id")}
    assert set(prod) == set(dev)
    names = ["id", "email", "full_name", "phone", "note", "tags", "code", "born", "secret", "plan"]
    masked_columns = set(RULES["masking.people"])
    for key in prod:
        for index, name in enumerate(names):
            before, after = prod[key][index], dev[key][index]
            if name not in masked_columns:
                assert after == before, (key, name)
            elif before is None:
                assert after is None, (key, name)  # NULL stays NULL
            elif before in ("", []) and name != "secret":
                assert after == before, (key, name)  # so does the empty value (sql: is the user's own)
            elif name == "born":
                assert after is None
            else:
                assert after != before, (key, name, before, after)
    ada = dev[1]
    assert ada[1].endswith("@example.com") and ada[1] != "ada@example.org"
    assert len(ada[4]) == len(prod[1][4]) and ada[4].startswith("xxxx xxx\n")  # redact keeps length and classes
    assert ada[5][1] is None and ada[5][2] == "" and ada[5][0] != "a,b"  # arrays element by element
    assert len(ada[6]) == 8  # varchar(8) keeps its limit
    assert ada[8] == "t***"


def test_masking_is_deterministic_across_runs_and_tables_and_keyed(cluster, masked):
    load(cluster, "dev", masked, masks=RULES, masking_key=KEY)
    first = rows(cluster, "dev", "SELECT id, email, full_name FROM masking.people ORDER BY id")
    joined = rows(cluster, "dev", "SELECT count(*) FROM masking.subscriptions s JOIN masking.people p USING (email)")
    assert joined == rows(cluster, "prod", "SELECT count(*) FROM masking.subscriptions")
    load(cluster, "dev", masked, masks=RULES, masking_key=KEY)
    assert rows(cluster, "dev", "SELECT id, email, full_name FROM masking.people ORDER BY id") == first
    load(cluster, "dev", masked, masks=RULES, masking_key="another-key")
    other = rows(cluster, "dev", "SELECT id, email, full_name FROM masking.people ORDER BY id")
    assert all(a[1] != b[1] and a[2] != b[2] for a, b in zip(first, other))
    # The unique key over the masked email still holds: the load re-created it on the masked data.
    assert rows(cluster, "dev", "SELECT count(DISTINCT email) = count(email) FROM masking.people") == [(True,)]


def _expected(strategy, value):
    """The documented formula, computed apart from the SQL: sha256 of key, U+001F and the value."""
    if value is None or value == "":
        return value
    digest = hashlib.sha256(f"{KEY}\x1f{value}".encode()).hexdigest()
    number = int(digest[:15], 16)
    if strategy == "email":
        return f"u{digest[:20]}@example.com"
    if strategy == "name":
        return f"{FIRST_NAMES[number % 16]} {LAST_NAMES[number // 16 % 16]}-{digest[:4]}"
    if strategy == "phone":
        digits = f"{number % 10_000_000:07d}"
        return f"+1-555-{digits[:3]}-{digits[-4:]}"
    return digest


def test_keyed_values_are_exactly_the_documented_formula_so_they_join_across_releases(cluster, masked):
    load(cluster, "dev", masked, masks=RULES, masking_key=KEY)
    prod = rows(cluster, "prod", "SELECT id, email, full_name, phone, tags, code FROM masking.people ORDER BY id")
    dev = rows(cluster, "dev", "SELECT id, email, full_name, phone, tags, code FROM masking.people ORDER BY id")
    for before, after in zip(prod, dev):
        assert after[1] == _expected("email", before[1])
        assert after[2] == _expected("name", before[2])
        assert after[3] == _expected("phone", before[3])
        assert after[4] == (None if before[4] is None else [_expected("hash", v) for v in before[4]])
        code = _expected("hash", before[5])
        assert after[5] == (code[:8] if code else code)  # varchar(8) keeps its limit


def test_a_strategy_that_cannot_produce_the_type_is_refused_before_any_write(cluster, masked):
    load(cluster, "dev", masked, masks=RULES, masking_key=KEY)
    before = cluster.fingerprints("dev")
    bad = {"masking.people": {**RULES["masking.people"], "born": MaskRule("email")}, "masking.subscriptions": RULES["masking.subscriptions"]}
    # The snapshot's recorded type already rules it out, before the target is asked.
    with pytest.raises(ConfigurationError, match=r"masking.people.born is date, and email produces text"):
        load(cluster, "dev", masked, masks=bad, masking_key=KEY)
    with pytest.raises(SchemaMismatchError, match=r"null cannot fill a NOT NULL column"):
        load(cluster, "dev", masked, masks={"masking.people": {"id": MaskRule("null")}}, masking_key=KEY)
    with pytest.raises(SchemaMismatchError, match=r"constant: 'soon' cannot produce date"):
        load(cluster, "dev", masked, masks={"masking.people": {"born": MaskRule("constant", "soon")}}, masking_key=KEY)
    assert cluster.fingerprints("dev") == before


def test_a_foreign_key_masked_on_one_side_only_is_refused(cluster, masked):
    one_side = {"masking.people": {"email": MaskRule("email")}}
    with pytest.raises(ConfigurationError, match=r"masking.subscriptions.email -> masking.people.email \(subscriptions_email_fkey\)"):
        load(cluster, "dev", masked, masks=one_side, masking_key=KEY)


def test_keyed_strategies_need_the_key(cluster, masked):
    with pytest.raises(ConfigurationError, match="MASKING_KEY is not set"):
        load(cluster, "dev", masked, masks=RULES, masking_key=None)


def test_personal_columns_are_recognised_by_name_and_type():
    for column, type_name in [("email", "text"), ("Display Name", "text"), ("full_name", "text"), ("birthday", "date"),
                              ("phoneNumber", "text"), ("client_ip", "text"), ("last_login", "inet"),
                              ("contact", "shop.email_address"), ("iban", "text")]:
        assert looks_personal(column, type_name), column
    for column, type_name in [("name", "text"), ("sku", "text"), ("shipping", "text"), ("zipped", "boolean")]:
        assert not looks_personal(column, type_name), column
    assert suggested_rule("email", "text") == "email" and suggested_rule("birthday", "date") == "null"
