"""Everything in the environment bound to the tables a swap replaces, and what a switch cannot carry.

A view, a function with a SQL-standard body, a materialized view, a foreign key from another
table, a serial column's sequence and a publication all hold the live table by OID, so a new table
under the same name is not theirs until each is pointed at it. `find_dependents` reads them all
from pg_depend before anything is written and sorts each into what the switch re-points and what
it cannot: the latter are reasons, each naming the object, and `load: auto` falls back to the load
in place for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from ..pg.catalog import ForeignKeyEdge, TableRef, foreign_keys, quote_ident, quote_literal
from .postload import dependent_materialized_views
from .clone import _options, relation_grants


@dataclass
class View:
    regclass: str
    statement: str  # CREATE OR REPLACE VIEW, with its options


@dataclass
class MaterializedView:
    regclass: str
    create: str  # CREATE MATERIALIZED VIEW ... WITH [NO] DATA
    after: list[str] = field(default_factory=list)  # indexes, owner, grants, comments, once default privileges are revoked


@dataclass
class Publication:
    name: str
    table: TableRef
    statement: str  # ALTER PUBLICATION ... ADD TABLE ...


@dataclass
class Dependents:
    views: list[View] = field(default_factory=list)
    functions: list[tuple[str, str]] = field(default_factory=list)  # name, CREATE OR REPLACE FUNCTION whole
    materialized_views: list[MaterializedView] = field(default_factory=list)  # built on a swapped table
    refreshed: list[str] = field(default_factory=list)  # reading one through views: refreshed
    outside_foreign_keys: list[ForeignKeyEdge] = field(default_factory=list)  # from tables not swapped
    serial_sequences: list[tuple[str, TableRef, str]] = field(default_factory=list)  # sequence, table, column
    publications: list[Publication] = field(default_factory=list)
    blockers: list[str] = field(default_factory=list)  # what the switch cannot carry, each naming the object

    @property
    def locked(self) -> list[str]:
        """Relations besides the tables the switch locks first: it replaces or alters each. (Materialized
        views cannot be named in LOCK; their DROP and REFRESH lock them in turn.)"""
        return sorted({v.regclass for v in self.views} | {fk.child_relation for fk in self.outside_foreign_keys})


_DEPENDENTS = """
WITH swapped(oid) AS (SELECT unnest(%(tables)s::pg_catalog.regclass[])::pg_catalog.oid),
refs(oid) AS (SELECT oid FROM swapped UNION SELECT reltype FROM pg_catalog.pg_class WHERE oid IN (SELECT oid FROM swapped))
SELECT d.classid::pg_catalog.regclass::text, d.objid, d.deptype, d.refobjid,
       pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid),
       pg_catalog.pg_describe_object(d.refclassid, d.refobjid, 0)
FROM pg_catalog.pg_depend d
WHERE d.refobjid IN (SELECT oid FROM refs)
  AND d.refclassid IN ('pg_catalog.pg_class'::pg_catalog.regclass, 'pg_catalog.pg_type'::pg_catalog.regclass)
ORDER BY 5
"""


def find_dependents(conn: psycopg.Connection, tables: list[TableRef]) -> Dependents:
    found = Dependents()
    regclasses = [t.quoted for t in tables]
    oids = {oid: TableRef(s, n) for oid, s, n in conn.execute(
        "SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
        "ON n.oid = c.relnamespace WHERE c.oid = ANY(%s::pg_catalog.regclass[])", (regclasses,)).fetchall()}
    _table_blockers(conn, regclasses, found)
    views, functions, matviews = set(), set(), set()
    for catalog, objid, deptype, refobjid, what, of in conn.execute(_DEPENDENTS, {"tables": regclasses}).fetchall():
        kind = _classify(conn, catalog, objid, deptype, refobjid, oids)
        if kind in ("own", "foreign key"):
            continue
        if kind in ("view", "matview"):
            (relation,) = conn.execute("SELECT ev_class FROM pg_catalog.pg_rewrite WHERE oid = %s", (objid,)).fetchone()
            (views if kind == "view" else matviews).add(relation)
        elif kind == "function":
            functions.add(objid)
        elif kind == "serial":
            continue  # read below with its column
        elif kind == "publication":
            continue  # read below
        else:
            found.blockers.append(f"{what} depends on {of} ({kind})")
    found.views = [_view(conn, oid, found) for oid in sorted(views)]
    found.functions = [conn.execute("SELECT p.oid::pg_catalog.regproc::text, pg_catalog.pg_get_functiondef(p.oid) "
                                    "FROM pg_catalog.pg_proc p WHERE p.oid = %s", (oid,)).fetchone()
                       for oid in sorted(functions) if _owned(conn, "pg_proc", oid, found)]
    found.materialized_views = [_materialized_view(conn, oid, found) for oid in sorted(matviews)]
    found.refreshed = _refreshed(conn, tables, {m.regclass for m in found.materialized_views}, found)
    found.outside_foreign_keys = _outside_foreign_keys(conn, tables, found)
    found.serial_sequences = _serial_sequences(conn, regclasses, found)
    found.publications = _publications(conn, regclasses, oids, found)
    return found


def _table_blockers(conn: psycopg.Connection, regclasses: list[str], found: Dependents) -> None:
    """What the tables themselves need or have that a swap cannot serve."""
    rows = conn.execute(
        """
        SELECT c.oid::pg_catalog.regclass::text, pg_catalog.pg_get_userbyid(c.relowner),
               pg_catalog.pg_has_role(c.relowner, 'USAGE'), n.nspname,
               pg_catalog.has_schema_privilege(n.oid, 'CREATE'),
               EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class ch ON ch.oid = i.inhrelid
                       WHERE (i.inhrelid = c.oid OR i.inhparent = c.oid) AND NOT ch.relispartition
                         AND NOT (i.inhrelid = ANY(%(tables)s::pg_catalog.regclass[])
                                  AND i.inhparent = ANY(%(tables)s::pg_catalog.regclass[]))),
               c.reloftype <> 0, c.relhasrules,
               (SELECT string_agg(k.conname, ', ') FROM pg_catalog.pg_constraint k
                WHERE k.conrelid = c.oid AND k.contype = 'c' AND NOT k.convalidated),
               (SELECT string_agg(s.stxname, ', ') FROM pg_catalog.pg_statistic_ext s WHERE s.stxrelid = c.oid),
               (SELECT s.spcname FROM pg_catalog.pg_tablespace s WHERE s.oid = c.reltablespace
                AND NOT pg_catalog.has_tablespace_privilege(s.oid, 'CREATE'))
        FROM unnest(%(tables)s::pg_catalog.regclass[]) u(oid) JOIN pg_catalog.pg_class c ON c.oid = u.oid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        """, {"tables": regclasses}).fetchall()
    role = conn.execute("SELECT current_user").fetchone()[0]
    schemas_refused = set()
    for table, owner, owned, schema, may_create, inherits, typed, rules, unvalidated, stats, space in rows:
        if not owned:
            found.blockers.append(f"{table} is owned by {owner}, and replacing it needs its owner: grant "
                                  f"{quote_ident(owner)} TO {quote_ident(role)}, or load it in place")
        if not may_create and schema not in schemas_refused:
            schemas_refused.add(schema)
            found.blockers.append(f"moving the new tables into schema {schema} needs CREATE on it: "
                                  f"GRANT CREATE ON SCHEMA {quote_ident(schema)} TO {quote_ident(role)}")
        if inherits:
            found.blockers.append(f"{table} has an inheritance parent or child outside the replicated tables, which a "
                                  "swap cannot re-parent")
        if typed:
            found.blockers.append(f"{table} is a typed table (CREATE TABLE ... OF), which a swap cannot copy")
        if rules:
            found.blockers.append(f"{table} has rewrite rules (CREATE RULE), which a swap does not carry")
        if unvalidated:
            found.blockers.append(f"{table} has NOT VALID check constraints ({unvalidated}), which a copy would validate")
        if stats:
            found.blockers.append(f"{table} has extended statistics ({stats}), which a swap does not carry yet")
        if space:
            found.blockers.append(f"{table} lives in tablespace {space}, where the loading role may not CREATE: "
                                  f"GRANT CREATE ON TABLESPACE {quote_ident(space)} TO {quote_ident(role)}")
    may_create_schema = conn.execute(
        "SELECT pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE')").fetchone()[0]
    if not may_create_schema:
        database = conn.execute("SELECT pg_catalog.current_database()").fetchone()[0]
        found.blockers.append(f"a swap builds in a private schema, which needs CREATE on the database: "
                              f"GRANT CREATE ON DATABASE {quote_ident(database)} TO {quote_ident(role)}")


def _classify(conn: psycopg.Connection, catalog: str, objid: int, deptype: str, refobjid: int,
              swapped: dict[int, TableRef]) -> str:
    """What one pg_depend row is: part of a swapped table ('own'), something the switch re-points, or a blocker."""
    if catalog == "pg_class":
        if objid in swapped:
            return "own"  # a partition of a swapped table, or the table's own partition key
        (relkind,) = conn.execute("SELECT relkind FROM pg_catalog.pg_class WHERE oid = %s", (objid,)).fetchone()
        if relkind in ("i", "I") or relkind == "t":
            return "own"
        if relkind == "S":
            return "own" if deptype == "i" else "serial" if deptype == "a" else "a sequence"
        if refobjid not in swapped:
            return "uses the table's row type"  # a column of another table, of the table's type
        if relkind in ("r", "p"):
            return "an inheritance child or partition"
        return f"a relation of kind {relkind}"
    if catalog == "pg_type":
        row = conn.execute("SELECT typrelid, typelem FROM pg_catalog.pg_type WHERE oid = %s", (objid,)).fetchone()
        if row and (row[0] in swapped or row[1] in swapped or row[1] != 0):
            return "own"
        return "uses the table's row type"
    if catalog == "pg_constraint":
        conrelid, contype = conn.execute(
            "SELECT conrelid, contype FROM pg_catalog.pg_constraint WHERE oid = %s", (objid,)).fetchone()
        if conrelid in swapped:
            return "own"
        return "foreign key" if contype == "f" else "a constraint on another table"
    if catalog in ("pg_attrdef", "pg_trigger", "pg_policy"):
        column = {"pg_attrdef": "adrelid", "pg_trigger": "tgrelid", "pg_policy": "polrelid"}[catalog]
        (relid,) = conn.execute(f"SELECT {column} FROM pg_catalog.{catalog} WHERE oid = %s", (objid,)).fetchone()
        return "own" if relid in swapped else f"a {catalog.removeprefix('pg_')} of another table"
    if catalog == "pg_rewrite":
        relid, relkind = conn.execute(
            "SELECT r.ev_class, c.relkind FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class "
            "WHERE r.oid = %s", (objid,)).fetchone()
        if relid in swapped:
            return "own" if relid == refobjid else "a rule"
        return {"v": "view", "m": "matview"}.get(relkind, "a rule")
    if catalog == "pg_proc":
        # A SQL-standard body is bound to the table and re-created; a signature using the table's
        # row type is bound to a type that goes away with yesterday's table.
        return "function" if refobjid in swapped else "uses the table's row type"
    if catalog == "pg_publication_rel":
        return "publication"
    return "not carried by a swap"


def _owned(conn: psycopg.Connection, catalog: str, oid: int, found: Dependents) -> bool:
    owner_column = {"pg_class": "relowner", "pg_proc": "proowner", "pg_publication": "pubowner"}[catalog]
    owner, may, what = conn.execute(
        f"SELECT pg_catalog.pg_get_userbyid({owner_column}), pg_catalog.pg_has_role({owner_column}, 'USAGE'), "
        f"pg_catalog.pg_describe_object(%s::pg_catalog.regclass, oid, 0) FROM pg_catalog.{catalog} WHERE oid = %s",
        (catalog, oid)).fetchone()
    if not may:
        found.blockers.append(f"{what} is bound to a replaced table and owned by {owner}, so the loading role "
                              "cannot point it at the new one")
    return may


def _view(conn: psycopg.Connection, oid: int, found: Dependents) -> View:
    _owned(conn, "pg_class", oid, found)
    regclass, definition, options = conn.execute(
        "SELECT oid::pg_catalog.regclass::text, pg_catalog.pg_get_viewdef(oid), reloptions "
        "FROM pg_catalog.pg_class WHERE oid = %s", (oid,)).fetchone()
    with_options = f" WITH ({_options(options)})" if options else ""
    return View(regclass, f"CREATE OR REPLACE VIEW {regclass}{with_options} AS {definition.rstrip().rstrip(';')}")


def _materialized_view(conn: psycopg.Connection, oid: int, found: Dependents) -> MaterializedView:
    _owned(conn, "pg_class", oid, found)
    regclass, definition, options, space, populated, owner, comment = conn.execute(
        """
        SELECT c.oid::pg_catalog.regclass::text, pg_catalog.pg_get_viewdef(c.oid), c.reloptions,
               (SELECT s.spcname FROM pg_catalog.pg_tablespace s WHERE s.oid = c.reltablespace), c.relispopulated,
               pg_catalog.pg_get_userbyid(c.relowner), pg_catalog.obj_description(c.oid, 'pg_class')
        FROM pg_catalog.pg_class c WHERE c.oid = %s
        """, (oid,)).fetchone()
    dependents = conn.execute(
        "SELECT DISTINCT pg_catalog.pg_describe_object(d.classid, d.objid, 0) FROM pg_catalog.pg_depend d "
        "LEFT JOIN pg_catalog.pg_rewrite r ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND r.oid = d.objid "
        "WHERE d.refobjid = %s AND d.deptype = 'n' AND coalesce(r.ev_class, 0) <> %s", (oid, oid)).fetchall()
    for (what,) in dependents:
        found.blockers.append(f"{what} depends on materialized view {regclass}, which a swap rebuilds")
    create = (f"CREATE MATERIALIZED VIEW {regclass}" + (f" WITH ({_options(options)})" if options else "")
              + (f" TABLESPACE {quote_ident(space)}" if space else "")
              + f" AS {definition.rstrip().rstrip(';')} WITH {'' if populated else 'NO '}DATA")
    after = [row[0] for row in conn.execute(
        "SELECT pg_catalog.pg_get_indexdef(indexrelid) FROM pg_catalog.pg_index WHERE indrelid = %s ORDER BY indexrelid",
        (oid,)).fetchall()]
    after.append(f"ALTER MATERIALIZED VIEW {regclass} OWNER TO {quote_ident(owner)}")
    after += [grant.replace("{target}", regclass, 1) for grant in relation_grants(conn, oid, "TABLE")[0]]
    if comment is not None:
        after.append(f"COMMENT ON MATERIALIZED VIEW {regclass} IS {quote_literal(comment)}")
    return MaterializedView(regclass, create, after)


def _refreshed(conn: psycopg.Connection, tables: list[TableRef], rebuilt: set[str], found: Dependents) -> list[str]:
    """Materialized views reading a swapped table through views: the same object, refreshed in the switch."""
    names = []
    for name, may_refresh, populated in dependent_materialized_views(conn, tables):
        if name in rebuilt or not populated:
            continue
        if not may_refresh:
            found.blockers.append(f"materialized view {name} reads a replaced table and is not owned by the loading role")
            continue
        names.append(name)
    return names


def _outside_foreign_keys(conn: psycopg.Connection, tables: list[TableRef], found: Dependents) -> list[ForeignKeyEdge]:
    wanted = set(tables)
    outside = [fk for fk in foreign_keys(conn, tables) if fk.parent in wanted and fk.child not in wanted]
    for fk in outside:
        if not fk.alterable:
            found.blockers.append(f"foreign key {fk.name} of {fk.child_relation} references {fk.parent_relation}, "
                                  "and the loading role may not drop and re-add it (it does not own that table)")
    return outside


def _serial_sequences(conn: psycopg.Connection, regclasses: list[str], found: Dependents) -> list[tuple[str, TableRef, str]]:
    rows = conn.execute(
        """
        SELECT s.oid::pg_catalog.regclass::text, n.nspname, t.relname, a.attname,
               pg_catalog.pg_has_role(s.relowner, 'USAGE'), pg_catalog.pg_get_userbyid(s.relowner)
        FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'
        JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
        JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
        JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype = 'a'
          AND d.refobjid = ANY(%s::pg_catalog.regclass[])
        ORDER BY 1
        """, (regclasses,)).fetchall()
    for sequence, _, _, _, owned, owner in rows:
        if not owned:
            found.blockers.append(f"sequence {sequence} belongs to {owner}; the switch hands it to the new table")
    return [(sequence, TableRef(schema, table), column) for sequence, schema, table, column, _, _ in rows]


def _publications(conn: psycopg.Connection, regclasses: list[str], swapped: dict[int, TableRef],
                  found: Dependents) -> list[Publication]:
    rows = conn.execute(
        """
        SELECT p.oid, p.pubname, r.prrelid,
               (SELECT string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum) FROM pg_catalog.pg_attribute a
                WHERE a.attrelid = r.prrelid AND a.attnum = ANY(r.prattrs)),
               pg_catalog.pg_get_expr(r.prqual, r.prrelid)
        FROM pg_catalog.pg_publication_rel r JOIN pg_catalog.pg_publication p ON p.oid = r.prpubid
        WHERE r.prrelid = ANY(%s::pg_catalog.regclass[]) ORDER BY 2
        """, (regclasses,)).fetchall()
    result = []
    for oid, name, relid, columns, where in rows:
        if not _owned(conn, "pg_publication", oid, found):
            continue
        table = swapped[relid]
        statement = (f"ALTER PUBLICATION {quote_ident(name)} ADD TABLE ONLY {table.quoted}"
                     + (f" ({columns})" if columns else "") + (f" WHERE ({where})" if where else ""))
        result.append(Publication(name, table, statement))
    return result
