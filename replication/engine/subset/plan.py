"""Subsets that keep every foreign key whole, chosen on the target in SQL inside the load transaction.

The tables a subset touches (its roots and every table whose foreign keys lead to one) are staged
whole in session-private temporary tables, as masking stages its tables. Each staged row gets a
mark, set by UPDATEs that join the staged tables along the target's foreign keys:

- a root's rule marks its rows SELECTED;
- a row whose foreign key references a SELECTED row is SELECTED too (orders of kept customers,
  then their items), to a fixed point, so self-references and cycles are followed as far as they go;
- every row a marked row references is marked PARENT if it is not marked yet, transitively; a
  PARENT row does not pull in its own children, which is what keeps junction tables from exploding.

Only marked rows are inserted into the real tables; tables no root leads to are copied whole, and
their rows satisfy every reference to them. No row passes through Python.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from ..errors import ConfigurationError
from ..pg.catalog import Column, ForeignKeyEdge, TableRef, foreign_key_edges, foreign_key_order, parents_of
from ..pg.staging import staging_table
from ..snapshot.manifest import Manifest

MARK = "replication_subset_mark"
SELECTED = 2
PARENT = 1
# The key of `percent` when MASKING_KEY is not set: documented, so a subset is reproducible anywhere.
DEFAULT_SUBSET_KEY = "replication-subset-v1"
# A fixed point is reached in as many passes as the longest chain of a cycle; this only stops a bug.
MAX_PASSES = 10_000


@dataclass(frozen=True)
class SubsetRule:
    """A root's rule: `percent` of its rows by a keyed hash of the primary key, or rows matching `where`."""

    percent: float | None = None
    where: str | None = None

    def describe(self) -> str:
        return f"{self.percent:g}%" if self.percent is not None else f"where {self.where}"


@dataclass
class SubsetPlan:
    """What the load transaction needs to choose the rows, read from the target's catalog before it begins."""

    environment: str
    rules: dict[TableRef, SubsetRule]
    tables: list[TableRef]  # the roots and every table downstream of one, referenced tables first
    edges: list[ForeignKeyEdge]  # foreign keys between those tables, self-references included
    keys: dict[TableRef, list[str]]  # primary key columns of the percent roots
    cyclic: bool  # a self-reference or a cycle: passes repeat until nothing changes
    columns: dict[TableRef, dict[str, str]]  # each table's snapshot columns -> the target's type
    # Tables whose every column has production's type in the target: staged as text (half the
    # cost of COPY's typed input), and typed only where compared or kept.
    as_text: set[TableRef]
    # Foreign keys along which a marked row may reference a row not yet marked.
    pulls: list[ForeignKeyEdge]
    # Leaves that no root, no cycle and no parent pull involves (order items): their rows are not
    # marked at all; the insert keeps those that reference a selected row, in the same scan.
    leaves: set[TableRef] = field(default_factory=set)

    def covers(self, ref: TableRef) -> bool:
        return ref in self._set

    def into(self, ref: TableRef) -> list[ForeignKeyEdge]:
        """The foreign keys of `ref` to tables of the subset (itself included)."""
        return [e for e in self.edges if e.child == ref]

    def __post_init__(self):
        self._set = set(self.tables)

    def value(self, ref: TableRef, column: str, alias: str | None = None) -> sql.Composable:
        """A staged column as its type: a cast where the table was staged as text."""
        name = sql.Identifier(alias, column) if alias else sql.Identifier(column)
        if ref not in self.as_text:
            return name
        return sql.SQL("{}::{}").format(name, sql.SQL(self.columns[ref][column]))

    def typed_columns(self, ref: TableRef, alias: str) -> sql.Composable:
        return sql.SQL(", ").join(sql.SQL("{} AS {}").format(self.value(ref, c, alias), sql.Identifier(c))
                                  for c in self.columns[ref])


def primary_keys(conn: psycopg.Connection, tables: list[TableRef]) -> dict[TableRef, list[str]]:
    rows = conn.execute(
        """
        SELECT w.ord, ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY u(n, o)
                            JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = u.n ORDER BY u.o)
        FROM unnest(%s::text[]) WITH ORDINALITY w(rel, ord)
        JOIN pg_catalog.pg_index i ON i.indrelid = w.rel::pg_catalog.regclass AND i.indisprimary
        """,
        ([t.ident.as_string(conn) for t in tables],),
    ).fetchall()
    return {tables[ordinal - 1]: list(columns) for ordinal, columns in rows}


def _where(rule: SubsetRule) -> sql.SQL:
    # Always executed with bound parameters: the extended protocol takes one statement only, so a
    # `where` cannot smuggle in a second one. Its % signs are not placeholders.
    return sql.SQL("({})").format(sql.SQL(rule.where.replace("%", "%%")))


def plan_subset(conn: psycopg.Connection, environment: str, manifest: Manifest, rules: dict[str, SubsetRule],
                edges: list[ForeignKeyEdge], target: dict[TableRef, list[Column]]) -> SubsetPlan | None:
    """Check the rules against the snapshot and the target, before anything is written.

    `edges` are the target's foreign keys between the snapshot's tables, `target` its columns of
    them: what the load's own plan has read already.
    """
    if not rules:
        return None
    loaded = {entry.key: entry.ref for entry in manifest.tables}
    unknown = sorted(table for table in rules if table not in loaded)
    if unknown:
        raise ConfigurationError(
            f"{environment}: subset names {', '.join(unknown)}, which the snapshot does not hold; "
            f"subset roots must be snapshot tables (schema.table, e.g. {next(iter(loaded), 'shop.customers')}). "
            "Nothing was written.")
    roots = {loaded[table]: rule for table, rule in rules.items()}
    keys = primary_keys(conn, [ref for ref, rule in roots.items() if rule.percent is not None])
    for ref, rule in roots.items():
        if rule.percent is not None and ref not in keys:
            raise ConfigurationError(
                f"{environment}: subset {ref.key}: percent needs a primary key to choose rows by, and "
                f"{ref.key} has none in the target; add one, or write a where rule. Nothing was written.")
        if rule.where is not None:
            _check_where(conn, environment, ref, rule)
    tables = _downstream(roots, edges)
    inside = [e for e in edges if e.child in tables and e.parent in tables]
    order, cyclic = foreign_key_order(parents_of(list(tables), inside))
    cyclic = cyclic or any(e.child == e.parent for e in inside)
    columns, as_text = {}, set()
    for ref in order:
        entry = manifest.table(ref.key)
        types = {c.name: c.type for c in target.get(ref, [])}
        columns[ref] = {c.name: types[c.name] for c in entry.columns}
        if all(types[c.name] == c.type for c in entry.columns):
            as_text.add(ref)
    pulls = inside if cyclic else _pulls(set(roots), inside)
    leaves = set() if cyclic else {t for t in order if t not in roots and not any(e.parent == t for e in inside)
                                   and not any(e.child == t for e in pulls)}
    return SubsetPlan(environment, roots, order, inside, keys, cyclic, columns, as_text, pulls, leaves)


def _pulls(roots: set[TableRef], edges: list[ForeignKeyEdge]) -> list[ForeignKeyEdge]:
    """The foreign keys (of an acyclic subset) along which a kept row can need a parent not yet kept.

    A child that is no root, has this one foreign key into the subset and no row kept only as a
    parent, holds only rows that followed a selected parent through this key: pulling adds nothing.
    """
    from_child: dict[TableRef, list[ForeignKeyEdge]] = {}
    into: dict[TableRef, list[ForeignKeyEdge]] = {}
    for e in edges:
        from_child.setdefault(e.child, []).append(e)
        into.setdefault(e.parent, []).append(e)
    needed: dict[ForeignKeyEdge, bool] = {}

    def may_hold_parents_only(table: TableRef) -> bool:
        return any(pulls_new(e) for e in into.get(table, []))

    def pulls_new(edge: ForeignKeyEdge) -> bool:
        if edge not in needed:
            child = edge.child
            needed[edge] = child in roots or len(from_child[child]) > 1 or may_hold_parents_only(child)
        return needed[edge]

    return [e for e in edges if pulls_new(e)]


def subset_tables(conn: psycopg.Connection, tables: list[TableRef], roots: list[str]) -> set[str]:
    """The tables (schema.table) a subset with these roots touches: the roots and every table downstream."""
    by_key = {t.key: t for t in tables}
    found = _downstream({by_key[r]: SubsetRule() for r in roots if r in by_key}, foreign_key_edges(conn, tables))
    return {t.key for t in found}


def _check_where(conn: psycopg.Connection, environment: str, ref: TableRef, rule: SubsetRule) -> None:
    """Plan the rule against the target table, so a typo fails with PostgreSQL's own words and nothing written."""
    try:
        with conn.transaction():
            conn.execute(sql.SQL("EXPLAIN SELECT 1 FROM {} WHERE {} AND %s").format(ref.ident, _where(rule)), (True,))
    except psycopg.Error as exc:
        detail = (exc.diag.message_primary or str(exc)).strip()
        raise ConfigurationError(
            f"{environment}: subset {ref.key}: where {rule.where!r} is not valid on {ref.key}: {detail}. "
            "Fix it in replication.yaml. Nothing was written.") from None


def _downstream(roots: dict[TableRef, SubsetRule], edges: list[ForeignKeyEdge]) -> set[TableRef]:
    """The roots and every table whose foreign keys lead to one of them."""
    children: dict[TableRef, set[TableRef]] = {}
    for e in edges:
        children.setdefault(e.parent, set()).add(e.child)
    found, queue = set(roots), deque(roots)
    while queue:
        for child in children.get(queue.popleft(), ()):
            if child not in found:
                found.add(child)
                queue.append(child)
    return found


def stage_table(conn: psycopg.Connection, plan: SubsetPlan, ref: TableRef, number: int) -> TableRef:
    """An empty temporary copy of `ref`'s columns (as text where its types are production's) plus
    the mark, dropped at COMMIT."""
    text = ref in plan.as_text
    columns = sql.SQL(", ").join(
        sql.SQL("{}::pg_catalog.text AS {}" if text else "{}").format(*[sql.Identifier(c)] * (2 if text else 1))
        for c in plan.columns[ref])
    return staging_table(conn, f"replication_subset_{number}", ref,
                         sql.SQL("{}, NULL::pg_catalog.int2 AS {}").format(columns, sql.Identifier(MARK)))


SUBSET_KEY_SETTING = "replication.subset_key"


class RowChooser:
    """Marks the rows to keep in the staged tables: the roots' rules, their followers, then every parent.

    In an acyclic subset a table's marks depend only on its rule and its parents' marks, so each
    table is marked as soon as it is staged, and the next tables can be staged through a
    prefilter (engine.subset.prefilter) that skips most rows they will not keep. A cycle is marked once
    everything is staged, passes repeating to a fixed point.
    """

    def __init__(self, conn: psycopg.Connection, plan: SubsetPlan, key: str):
        self.conn, self.plan = conn, plan
        self.staged: dict[TableRef, TableRef] = {}
        self.bitmaps: dict = {}  # the prefilters' bitmaps of selected keys, by parent and key columns
        # Marking as tables arrive: acyclic, and (checked as they come) every parent staged first.
        self.incremental = not plan.cyclic
        # A setting, not a literal: the key is a secret and must not show in statements or logs.
        conn.execute("SELECT pg_catalog.set_config(%s, %s, true)", (SUBSET_KEY_SETTING, key))

    def add(self, ref: TableRef, staging: TableRef, filtered: bool = False) -> None:
        """`ref` is staged; `filtered` if it was read through its prefilter (engine.subset.prefilter)."""
        self.staged[ref] = staging
        into = self.plan.into(ref)
        self.incremental = self.incremental and all(e.parent in self.staged for e in into)
        if self.incremental:
            if ref in self.plan.rules:
                # A root read through its own rule alone holds only rows the rule selects.
                self._apply_rule(ref, every_row=filtered and not into)
            if ref not in self.plan.leaves:
                _to_fixed_point(self.conn, [_follow_statement(self.plan, e, self.staged) for e in into], False)

    def finish(self) -> None:
        plan = self.plan
        if not self.incremental:
            for ref in plan.rules:
                self._apply_rule(ref)
            down = sorted((e for e in plan.edges if e.child not in plan.leaves), key=lambda e: plan.tables.index(e.child))
            _to_fixed_point(self.conn, [_follow_statement(plan, e, self.staged) for e in down], plan.cyclic)
        up = sorted(plan.pulls, key=lambda e: plan.tables.index(e.child), reverse=True)
        _to_fixed_point(self.conn, [_parent_statement(plan, e, self.staged) for e in up], plan.cyclic)

    def _apply_rule(self, ref: TableRef, every_row: bool = False) -> None:
        rule = self.plan.rules[ref]
        condition = sql.SQL("true") if every_row else rule_condition(self.plan, ref, rule, self.staged[ref])
        update = sql.SQL("UPDATE {} SET {} = {} WHERE {}").format(
            self.staged[ref].ident, sql.Identifier(MARK), sql.Literal(SELECTED), condition)
        # A where rule's % signs are escaped for placeholders, so it runs with (no) parameters.
        self.conn.execute(update, {} if rule.where is not None else None)


def rule_condition(plan: SubsetPlan, ref: TableRef, rule: SubsetRule, staging: TableRef) -> sql.Composable:
    """A root's rule on its staged table, unqualified; a percent rule holds no placeholder, so
    COPY ... WHERE can use it as it stands."""
    if rule.where is not None:
        if ref not in plan.as_text:
            return _where(rule)
        # The condition is written against the table's typed columns: evaluated on them.
        return sql.SQL("ctid IN (SELECT replication_row FROM (SELECT r.ctid AS replication_row, {} FROM {} r) v "
                       "WHERE {})").format(plan.typed_columns(ref, "r"), staging.ident, _where(rule))
    # The first 32 bits of sha256(key, table, primary key): the same rows every day and in every
    # environment with the same key and percent, and independent of any other table's choice.
    row = _row_text(plan, ref, plan.keys[ref])
    digest = sql.SQL("pg_catalog.sha256(pg_catalog.convert_to(pg_catalog.current_setting({}) || chr(31) || {} "
                     "|| chr(31) || {}, 'UTF8'))").format(sql.Literal(SUBSET_KEY_SETTING), sql.Literal(ref.key), row)
    threshold = int(rule.percent / 100 * 2 ** 32)
    if threshold >= 2 ** 32:
        return sql.SQL("true")
    # Four bytes compare as bytea in the order of the 32-bit number they spell, without the cost
    # of printing the digest in hex.
    return sql.SQL("pg_catalog.substr({}, 1, 4) < {}::pg_catalog.bytea").format(
        digest, sql.Literal("\\x" + threshold.to_bytes(4, "big").hex()))


INTEGER_TYPES = ("smallint", "integer", "bigint")


def _row_text(plan: SubsetPlan, ref: TableRef, columns: list[str]) -> sql.Composable:
    """ROW(key)::text, the text the percent hash is taken of. A one-column integer key staged as
    text is production's own digits, which a record prints unquoted: spelled out, it spares every
    row a cast and a record."""
    if len(columns) == 1 and ref in plan.as_text and plan.columns[ref][columns[0]] in INTEGER_TYPES:
        return sql.SQL("('(' || {} || ')')").format(sql.Identifier(columns[0]))
    return sql.SQL("ROW({})::text").format(sql.SQL(", ").join(plan.value(ref, c) for c in columns))


# Types whose printed text is equal exactly when their values are (under the pinned session
# settings): staged as text, their keys join as text. Others (numeric 1.0 and 1.00, floats'
# -0 and 0, citext, ...) are cast and compared as their type does.
CANONICAL_TEXT_TYPES = ("smallint", "integer", "bigint", "text", "uuid", "date", "boolean",
                        "timestamp without time zone", "timestamp with time zone")


def joins_as_text(plan: SubsetPlan, edge: ForeignKeyEdge, child_column: str, parent_column: str) -> bool:
    """Whether one column pair of a foreign key compares as the staged text: equal text, equal values."""
    child_type, parent_type = plan.columns[edge.child][child_column], plan.columns[edge.parent][parent_column]
    return (edge.child in plan.as_text and edge.parent in plan.as_text and child_type == parent_type
            and (child_type in CANONICAL_TEXT_TYPES or child_type.startswith("character varying")))


def _match(plan: SubsetPlan, edge: ForeignKeyEdge) -> sql.Composable:
    terms = []
    for cc, pc in zip(edge.child_columns, edge.parent_columns):
        if joins_as_text(plan, edge, cc, pc):
            terms.append(sql.SQL("c.{} = p.{}").format(sql.Identifier(cc), sql.Identifier(pc)))
        else:
            terms.append(sql.SQL("{} = {}").format(plan.value(edge.child, cc, "c"), plan.value(edge.parent, pc, "p")))
    return sql.SQL(" AND ").join(terms)


def _follow_statement(plan: SubsetPlan, edge: ForeignKeyEdge, staged: dict[TableRef, TableRef]) -> sql.Composable:
    """Rows of the child referencing a SELECTED row of the parent become SELECTED."""
    return sql.SQL("UPDATE {child} c SET {mark} = {selected} FROM {parent} p WHERE p.{mark} = {selected} "
                   "AND c.{mark} IS DISTINCT FROM {selected} AND {match}").format(
        child=staged[edge.child].ident, parent=staged[edge.parent].ident, mark=sql.Identifier(MARK),
        selected=sql.Literal(SELECTED), match=_match(plan, edge))


def _parent_statement(plan: SubsetPlan, edge: ForeignKeyEdge, staged: dict[TableRef, TableRef]) -> sql.Composable:
    """Rows of the parent referenced by any marked row of the child become PARENT, unless marked already."""
    return sql.SQL("UPDATE {parent} p SET {mark} = {parent_mark} FROM {child} c WHERE c.{mark} IS NOT NULL "
                   "AND p.{mark} IS NULL AND {match}").format(
        child=staged[edge.child].ident, parent=staged[edge.parent].ident, mark=sql.Identifier(MARK),
        parent_mark=sql.Literal(PARENT), match=_match(plan, edge))


def kept_condition(plan: SubsetPlan, ref: TableRef, staged: dict[TableRef, TableRef]) -> sql.Composable:
    """Which rows of staged table `ref` (aliased c) to insert: the marked ones, or for a leaf, those
    referencing a selected row."""
    if ref not in plan.leaves:
        return sql.SQL("c.{} IS NOT NULL").format(sql.Identifier(MARK))
    return sql.SQL(" OR ").join(
        sql.SQL("EXISTS (SELECT 1 FROM {} p WHERE p.{} = {} AND {})").format(
            staged[e.parent].ident, sql.Identifier(MARK), sql.Literal(SELECTED), _match(plan, e))
        for e in plan.into(ref))


def _to_fixed_point(conn: psycopg.Connection, statements: list[sql.Composable], cyclic: bool) -> None:
    """One pass in foreign-key order settles a tree; a cycle repeats passes until one changes nothing."""
    for _ in range(MAX_PASSES):
        changed = 0
        for statement in statements:
            with conn.cursor() as cur:
                cur.execute(statement)
                changed += cur.rowcount
        if not cyclic or not changed:
            return
    raise RuntimeError(f"the subset did not settle in {MAX_PASSES} passes")

