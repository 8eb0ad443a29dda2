"""Masking personal data on the target, in SQL, inside the load transaction.

A masked table's file is copied into a session-private temporary table (ON COMMIT DROP), then
inserted into the real table through one SELECT that applies each column's strategy. No row
passes through Python, no unmasked value ever lands in the target table's files, and nobody
connected to the environment can see the temporary table.

Keyed strategies hash with `MASKING_KEY`, passed as a transaction-local setting through a bound
parameter (never in the SQL text): the same input gives the same output in every table, day and
environment with the same key, so joins on masked columns keep working.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..pg.catalog import Column, TableRef, columns_of, foreign_keys
from ..errors import ConfigurationError, SchemaMismatchError
from ..snapshot.manifest import Manifest

# The one vocabulary of strategies: the configuration reads them by these names, the load applies them.
KEYED = ("hash", "email", "name", "phone")  # hashed with MASKING_KEY: the same input, the same output
NAMED = (*KEYED, "null", "redact")  # written by name alone in replication.yaml
WITH_ARGUMENT = ("sql", "constant")  # written {sql: <expression>} or {constant: <value>}
TEXT_STRATEGIES = (*KEYED, "redact")
STRATEGY_HELP = f"one of {', '.join(NAMED)}, {{sql: <expression>}} or {{constant: <value>}}"


def keyed_strategies() -> str:
    """`hash, email, name and phone`, for messages."""
    return f"{', '.join(KEYED[:-1])} and {KEYED[-1]}"
KEY_SETTING = "replication.masking_key"

FIRST_NAMES = ("Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Riley", "Jamie", "Avery", "Quinn",
               "Robin", "Drew", "Kai", "Noa", "Eli", "Ari")
LAST_NAMES = ("Smith", "Jones", "Garcia", "Kim", "Novak", "Silva", "Okafor", "Larsen", "Rossi", "Dubois",
              "Tanaka", "Nowak", "Haddad", "Moreau", "Berg", "Costa")


@dataclass(frozen=True)
class MaskRule:
    """One column's strategy; `value` is the constant or the SQL expression where they apply."""

    strategy: str
    value: object = None

    @property
    def keyed(self) -> bool:
        return self.strategy in KEYED

    def describe(self) -> str:
        if self.strategy == "sql":
            return f"sql: {self.value}"
        if self.strategy == "constant":
            return f"constant: {self.value!r}"
        return self.strategy


def _key() -> sql.Composable:
    return sql.SQL("pg_catalog.current_setting({})").format(sql.Literal(KEY_SETTING))


def _digest(value: sql.Composable) -> sql.Composable:
    """Hex sha256 of key, a separator and the value: deterministic per key, different across keys."""
    return sql.SQL("pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to({} || chr(31) || {}, 'UTF8')), 'hex')").format(
        _key(), value
    )


def _number(digest: sql.Composable, digits: int = 15) -> sql.Composable:
    return sql.SQL("(('x' || pg_catalog.left({}, {}))::bit({})::bigint)").format(digest, sql.Literal(digits), sql.Literal(digits * 4))


def _text_strategy(strategy: str, value: sql.Composable) -> sql.Composable:
    """The masked text of one text value; NULL and the empty string stay as they are."""
    # name and phone read the digest more than once, and PostgreSQL would compute each copy: a
    # per-row sha256 costs more than the rest of the expression. OFFSET 0 keeps the planner from
    # folding the subquery back, so the digest is computed once.
    once = strategy in ("name", "phone")
    digest = sql.SQL("masking_digest.d") if once else _digest(value)
    if strategy == "hash":
        body = digest
    elif strategy == "email":
        body = sql.SQL("'u' || pg_catalog.left({}, 20) || '@example.com'").format(digest)
    elif strategy == "name":
        first = sql.SQL("(ARRAY[{}])[1 + {} % {}]").format(
            sql.SQL(", ").join(map(sql.Literal, FIRST_NAMES)), _number(digest), sql.Literal(len(FIRST_NAMES)))
        last = sql.SQL("(ARRAY[{}])[1 + ({} / {}) % {}]").format(
            sql.SQL(", ").join(map(sql.Literal, LAST_NAMES)), _number(digest), sql.Literal(len(FIRST_NAMES)),
            sql.Literal(len(LAST_NAMES)))
        # A short hash suffix keeps distinct people distinct, as the real names were.
        body = sql.SQL("{} || ' ' || {} || '-' || pg_catalog.left({}, 4)").format(first, last, digest)
    elif strategy == "phone":
        digits = sql.SQL("pg_catalog.lpad(({} % 10000000)::text, 7, '0')").format(_number(digest))
        body = sql.SQL("'+1-555-' || pg_catalog.left({0}, 3) || '-' || pg_catalog.right({0}, 4)").format(digits)
    elif strategy == "redact":
        body = sql.SQL(
            "pg_catalog.regexp_replace(pg_catalog.regexp_replace(pg_catalog.regexp_replace({}, "
            "'[[:lower:]]', 'x', 'g'), '[[:upper:]]', 'X', 'g'), '[[:digit:]]', '9', 'g')"
        ).format(value)
    else:
        raise ConfigurationError(f"unknown text strategy {strategy!r}")
    if once:
        body = sql.SQL("(SELECT {} FROM (SELECT {} AS d OFFSET 0) AS masking_digest)").format(body, _digest(value))
    return sql.SQL("CASE WHEN {v} IS NULL OR {v} = '' THEN {v} ELSE {b} END").format(v=value, b=body)


def mask_expression(rule: MaskRule, column: Column) -> sql.Composable:
    """The SELECT-list expression that produces the masked column, cast back to its own type."""
    ident = sql.Identifier(column.name)
    target_type = sql.SQL(column.type)
    if rule.strategy == "null":
        return sql.SQL("NULL::{}").format(target_type)
    if rule.strategy == "constant":
        return sql.SQL("CASE WHEN {c} IS NULL THEN NULL ELSE {v}::{t} END").format(
            c=ident, v=sql.Literal(None if rule.value is None else str(rule.value)), t=target_type)
    if rule.strategy == "sql":
        return sql.SQL("({})::{}").format(sql.SQL(str(rule.value)), target_type)
    if column.is_array:
        element = _text_strategy(rule.strategy, sql.SQL("e::text"))
        return sql.SQL(
            "CASE WHEN {c} IS NULL THEN NULL ELSE coalesce((SELECT pg_catalog.array_agg({el} ORDER BY i) "
            "FROM pg_catalog.unnest({c}) WITH ORDINALITY AS u(e, i)), '{{}}') END::{t}"
        ).format(c=ident, el=element, t=target_type)
    return sql.SQL("{}::{}").format(_text_strategy(rule.strategy, sql.SQL("{}::text").format(ident)), target_type)


def check_rules(conn: psycopg.Connection, environment: str, table: TableRef, rules: dict[str, MaskRule]) -> dict[str, Column]:
    """Every rule names an existing column and can produce its type; raise before any write otherwise."""
    columns = {c.name: c for c in columns_of(conn, [table]).get(table, [])}
    for name, rule in rules.items():
        where = f"{environment}: mask {table.key}.{name}"
        column = columns.get(name)
        if column is None:
            raise SchemaMismatchError(f"{where}: the column does not exist in the target. Fix the key in replication.yaml.")
        if rule.strategy in TEXT_STRATEGIES and column.category != "S":
            raise SchemaMismatchError(
                f"{where}: {rule.strategy} produces text, but the column is {column.type}. Use null, "
                "constant: or sql: for it, in replication.yaml. Nothing was written."
            )
        if rule.strategy == "null" and column.refuses_null:
            raise SchemaMismatchError(f"{where}: null cannot fill a NOT NULL column ({column.type}). Nothing was written.")
        if rule.strategy in ("constant", "sql"):
            probe = sql.SQL("EXPLAIN SELECT {} FROM {}").format(mask_expression(rule, column), table.ident)
            try:
                with conn.transaction():
                    conn.execute(probe)
                    if rule.strategy == "constant":
                        conn.execute(sql.SQL("SELECT {}::{}").format(sql.Literal(str(rule.value)), sql.SQL(column.type)))
            except psycopg.Error as exc:
                raise SchemaMismatchError(
                    f"{where}: {rule.describe()} cannot produce {column.type}: {str(exc).splitlines()[0]}. "
                    "Nothing was written."
                ) from None
    return columns


def foreign_key_gaps(conn: psycopg.Connection, masks: dict[str, dict[str, MaskRule]]) -> list[str]:
    """Foreign keys with a masked column on one side and not the same deterministic rule on the other."""
    rows = [(fk.name, fk.child.key, child_col, fk.parent.key, parent_col)
            for fk in foreign_keys(conn) for child_col, parent_col in zip(fk.child_columns, fk.parent_columns)]
    gaps = []
    for name, child, child_col, parent, parent_col in rows:
        left = masks.get(child, {}).get(child_col)
        right = masks.get(parent, {}).get(parent_col)
        if left is None and right is None:
            continue
        consistent = left is not None and right is not None and left == right and left.strategy in (*KEYED, "redact")
        if not consistent:
            gaps.append(f"{child}.{child_col} -> {parent}.{parent_col} ({name}): mask both with the same "
                        f"deterministic strategy (now {left.describe() if left else 'unmasked'} and "
                        f"{right.describe() if right else 'unmasked'})")
    return gaps


def set_key(conn: psycopg.Connection, key: str) -> None:
    conn.execute("SELECT pg_catalog.set_config(%s, %s, true)", (KEY_SETTING, key))


# --- privacy by default --------------------------------------------------------------------------

_PERSONAL_WORDS = {
    "email", "mail", "phone", "mobile", "fax", "surname", "firstname", "lastname", "fullname", "displayname",
    "givenname", "familyname", "address", "street", "zip", "postcode", "postal", "birth", "birthday", "dob",
    "birthdate", "ssn", "passport", "iban", "ip", "ipaddress", "taxid", "salary", "nationalid",
}
_PERSONAL_TYPES = ("inet", "cidr", "macaddr")


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]


def looks_personal(column: str, type_name: str) -> bool:
    """By name (email, phone, first/last/full/display name, address, birth, ssn, passport, iban, ip, ...)
    and by type (inet, cidr, macaddr, a domain named like email). A bare `name` is not enough:
    products and tables have names too."""
    words = _words(column)
    joined = {"".join(words[i:i + 2]) for i in range(len(words))}
    if (set(words) | joined) & _PERSONAL_WORDS:
        return True
    base = type_name.removesuffix("[]").rsplit(".", 1)[-1].strip('"').lower()
    return base in _PERSONAL_TYPES or "email" in base or "phone" in base


def suggested_rule(column: str, type_name: str) -> str:
    words = set(_words(column))
    if words & {"email", "mail"} or "email" in type_name.lower():
        return "email"
    if words & {"phone", "mobile", "fax"}:
        return "phone"
    if "name" in words or words & {"surname", "firstname", "lastname", "fullname", "displayname"}:
        return "name"
    if words & {"birth", "birthday", "dob", "birthdate"}:
        return "null"
    return "hash"


def unmasked_personal_columns(manifest: Manifest, rules: dict[str, dict[str, MaskRule]]) -> list[tuple[str, str]]:
    """Snapshot columns that look personal and have no rule, each with the rule to add."""
    found = []
    for entry in manifest.tables:
        covered = rules.get(entry.key, {})
        for column in entry.columns:
            if column.name not in covered and looks_personal(column.name, column.type):
                found.append((f"{entry.key}.{column.name}", suggested_rule(column.name, column.type)))
    return found


_BUILTIN_TEXT = re.compile(r"^(text|character varying(\(\d+\))?|character(\(\d+\))?|citext|name)(\[\])?$")
# Built-in types that are certainly not text; a user type (a domain, say) is left to the load's
# catalog check, which sees its base type.
_BUILTIN_NOT_TEXT = re.compile(
    r"^(smallint|integer|bigint|numeric.*|real|double precision|boolean|date|time.*|interval.*|uuid|jsonb?|"
    r"bytea|inet|cidr|macaddr8?|money|bit.*|oid|xml|point|tsvector)(\[\])?$"
)


def mask_problems(environment: str, rules: dict[str, dict[str, MaskRule]], manifest: Manifest) -> list[str]:
    """Mask keys naming a table or column the snapshot does not hold, or a text strategy on a
    column whose recorded type is certainly not text: what a production migration can make stale."""
    tables = {entry.key: entry for entry in manifest.tables}
    problems = []
    for table, columns in rules.items():
        entry = tables.get(table)
        if entry is None:
            problems.append(f"environments.{environment}.mask: table {table} is not in the snapshot "
                            f"(tables: {', '.join(sorted(tables))})")
            continue
        types = {c.name: c.type for c in entry.columns}
        for column, rule in columns.items():
            if column not in types:
                problems.append(f"environments.{environment}.mask: {table} has no column {column!r} "
                                f"(columns: {', '.join(entry.column_names)})")
            elif rule.strategy in TEXT_STRATEGIES and _BUILTIN_NOT_TEXT.match(types[column]) \
                    and not _BUILTIN_TEXT.match(types[column]):
                problems.append(f"environments.{environment}.mask: {table}.{column} is {types[column]}, and "
                                f"{rule.strategy} produces text; use null, {{constant: ...}} or {{sql: ...}}")
    return problems


def stale_mask_error(environment: str, problems: list[str], manifest: Manifest) -> ConfigurationError:
    listed = "\n".join(f"  - {p}" for p in problems)
    return ConfigurationError(
        f"{environment}: the masks in replication.yaml do not fit the {manifest.partition} snapshot, so nothing "
        f"was written:\n{listed}\nProduction's schema changed, or a key is mistyped: fix the mask rules of "
        f"{environment} in replication.yaml (the other environments are not affected)."
    )
