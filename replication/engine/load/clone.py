"""An empty copy of a live table in the swap's private schema, then everything pg_restore adds after the data.

`read_shapes` records what the catalog says of each live table, and `create_empty` makes its copy:
`LIKE ... INCLUDING` brings columns, types, collations, defaults, identity (with its sequence's
options), generated columns, NOT NULL and CHECK constraints, storage and compression; the rest
is added from the record. Definitions come from PostgreSQL's own deparsers (pg_get_indexdef,
pg_get_constraintdef, pg_get_triggerdef, pg_get_expr) on a connection whose search_path is
pg_catalog, so every name in them is schema-qualified and the live table's name appears in a
known place to be pointed at the copy. After the data, `index_statements`, `trigger_statements`
and `settings_statements` give what makes the copy the table it replaces: keys and indexes under
their own names, triggers (which did not fire for the loaded rows), policies, grants, comments
and settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import psycopg
from psycopg import sql

from ..pg.catalog import TableRef, quote_ident, quote_literal
from .rebuild import IndexNode, index_properties, index_trees
from .shadow import ShadowNames


@dataclass
class Shape:
    """One live table's definition beyond what LIKE copies."""

    ref: TableRef
    regclass: str
    owner: str
    owned_by_me: bool
    unlogged: bool
    access_method: str | None
    tablespace: str | None
    reloptions: list[str]
    replica_identity: str  # pg_class.relreplident: d, n, f or i
    row_security: bool
    force_row_security: bool
    comment: str | None
    grants: list[str] = field(default_factory=list)  # GRANT statements with {target} for the copy's name
    revoke_from_owner: list[str] = field(default_factory=list)
    column_settings: list[str] = field(default_factory=list)  # ALTER COLUMN clauses
    triggers: list[tuple[str, str, str, str | None]] = field(default_factory=list)  # name, def, tgenabled, comment
    policies: list[tuple[str, str, str | None]] = field(default_factory=list)  # name, CREATE POLICY with {target}, comment
    indexes: list[list[IndexNode]] = field(default_factory=list)
    identity_sequences: dict[str, str] = field(default_factory=dict)  # column -> the live sequence's own name
    identity_grants: dict[str, list[str]] = field(default_factory=dict)  # column -> GRANTs with {target}
    partition_key: str | None = None  # pg_get_partkeydef of a partitioned table
    parent: TableRef | None = None  # a partition's parent, and its bound
    bound: str | None = None
    local_checks: list[str] = field(default_factory=list)  # a child's own CHECK constraints, as ADD clauses
    column_comments: list[tuple[str, str]] = field(default_factory=list)  # a child's, which LIKE does not bring
    inherits: list[TableRef] = field(default_factory=list)  # inheritance parents (INHERITS), in order
    local_columns: list[str] = field(default_factory=list)  # an inheritance child's column definitions
    column_fixes: list[str] = field(default_factory=list)  # a child's inherited columns' own defaults, NOT NULL


def relations_of(conn: psycopg.Connection, tables: list[TableRef]) -> list[tuple[TableRef, TableRef | None]]:
    """The tables and every partition below them, parents first, each with its parent (None for the tables)."""
    rows = conn.execute(
        """
        WITH RECURSIVE tree(oid, parent, depth) AS (
            SELECT u.oid::pg_catalog.oid, NULL::pg_catalog.oid, 0
            FROM unnest(%s::pg_catalog.regclass[]) u(oid)
            UNION ALL
            SELECT i.inhrelid, t.oid, t.depth + 1 FROM tree t
            JOIN pg_catalog.pg_class p ON p.oid = t.oid AND p.relkind = 'p'
            JOIN pg_catalog.pg_inherits i ON i.inhparent = t.oid
        )
        SELECT n.nspname, c.relname, pn.nspname, pc.relname
        FROM tree t JOIN pg_catalog.pg_class c ON c.oid = t.oid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_catalog.pg_class pc ON pc.oid = t.parent
        LEFT JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
        ORDER BY t.depth, 1, 2
        """, ([t.quoted for t in tables],)).fetchall()
    return [(TableRef(schema, name), TableRef(ps, pn) if pn else None) for schema, name, ps, pn in rows]


def read_shapes(conn: psycopg.Connection, relations: list[tuple[TableRef, TableRef | None]]) -> dict[TableRef, Shape]:
    """Each relation's shape; `relations` as relations_of gives them, so partitions know their parent."""
    tables = [table for table, _ in relations]
    parents = dict(relations)
    regclasses = [t.quoted for t in tables]
    rows = conn.execute(
        """
        SELECT c.oid, c.oid::pg_catalog.regclass::text, pg_catalog.pg_get_userbyid(c.relowner),
               c.relowner = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user),
               c.relpersistence = 'u',
               (SELECT a.amname FROM pg_catalog.pg_am a WHERE a.oid = c.relam AND a.amname <> 'heap'),
               (SELECT s.spcname FROM pg_catalog.pg_tablespace s WHERE s.oid = c.reltablespace),
               coalesce(c.reloptions, '{}'), c.relreplident, c.relrowsecurity, c.relforcerowsecurity,
               pg_catalog.obj_description(c.oid, 'pg_class')
        FROM unnest(%s::pg_catalog.regclass[]) WITH ORDINALITY u(oid, ord)
        JOIN pg_catalog.pg_class c ON c.oid = u.oid ORDER BY u.ord
        """, (regclasses,)).fetchall()
    shapes: dict[TableRef, Shape] = {}
    for table, (oid, *row) in zip(tables, rows):
        shape = Shape(table, *row)
        shape.grants, shape.revoke_from_owner = _grants(conn, oid)
        shape.column_settings = _column_settings(conn, oid)
        # A partition's clones of its parent's triggers come back with the parent's.
        shape.triggers = conn.execute(
            "SELECT tgname, pg_catalog.pg_get_triggerdef(oid), tgenabled, pg_catalog.obj_description(oid, 'pg_trigger') "
            "FROM pg_catalog.pg_trigger WHERE tgrelid = %s AND NOT tgisinternal AND tgparentid = 0 ORDER BY tgname",
            (oid,)).fetchall()
        shape.policies = _policies(conn, oid)
        shape.parent = parents.get(table)
        # A tree's indexes are read from its root, partitions' indexes included.
        shape.indexes = index_trees(conn, [shape.regclass]) if shape.parent is None else []
        shape.identity_sequences, shape.identity_grants = _identity_sequences(conn, oid)
        shape.partition_key, shape.bound = conn.execute(
            "SELECT CASE WHEN c.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(c.oid) END, "
            "CASE WHEN c.relispartition THEN pg_catalog.pg_get_expr(c.relpartbound, c.oid) END "
            "FROM pg_catalog.pg_class c WHERE c.oid = %s", (oid,)).fetchone()
        shape.inherits = [TableRef(*row) for row in conn.execute(
            "SELECT n.nspname, p.relname FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class p ON p.oid = i.inhparent "
            "JOIN pg_catalog.pg_namespace n ON n.oid = p.relnamespace JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhrelid = %s AND NOT c.relispartition ORDER BY i.inhseqno", (oid,)).fetchall()]
        if shape.inherits:
            shape.local_columns, shape.column_fixes = _child_columns(conn, oid)
        if shape.parent is not None or shape.inherits:
            shape.local_checks = [f"ADD CONSTRAINT {quote_ident(name)} {definition}" for name, definition in conn.execute(
                "SELECT conname, pg_catalog.pg_get_constraintdef(oid) FROM pg_catalog.pg_constraint "
                "WHERE conrelid = %s AND contype = 'c' AND conislocal ORDER BY conname", (oid,)).fetchall()]
            shape.column_comments = conn.execute(
                "SELECT a.attname, d.description FROM pg_catalog.pg_description d JOIN pg_catalog.pg_attribute a "
                "ON a.attrelid = d.objoid AND a.attnum = d.objsubid WHERE d.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass "
                "AND d.objoid = %s AND d.objsubid > 0 ORDER BY a.attnum", (oid,)).fetchall()
        shapes[table] = shape
    return shapes


def _child_columns(conn: psycopg.Connection, oid: int) -> tuple[list[str], list[str]]:
    """An inheritance child's own column definitions, as pg_dump writes them (its inherited columns
    come from INHERITS), and ALTER clauses for what it changed on inherited ones."""
    rows = conn.execute(
        """
        SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attislocal,
               CASE WHEN a.attcollation <> t.typcollation THEN
                    (SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.collname)
                     FROM pg_catalog.pg_collation c JOIN pg_catalog.pg_namespace n ON n.oid = c.collnamespace
                     WHERE c.oid = a.attcollation) END,
               a.attnotnull, pg_catalog.pg_get_expr(d.adbin, d.adrelid), a.attgenerated, a.attidentity,
               a.attstorage <> t.typstorage, a.attstorage,
               EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_attribute pa
                       ON pa.attrelid = i.inhparent AND pa.attname = a.attname
                       WHERE i.inhrelid = a.attrelid AND pa.attnotnull),
               EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_attrdef pd
                       ON pd.adrelid = i.inhparent JOIN pg_catalog.pg_attribute pa
                       ON pa.attrelid = i.inhparent AND pa.attnum = pd.adnum AND pa.attname = a.attname
                       WHERE i.inhrelid = a.attrelid AND pg_catalog.pg_get_expr(pd.adbin, pd.adrelid)
                             IS NOT DISTINCT FROM pg_catalog.pg_get_expr(d.adbin, d.adrelid))
        FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
        """, (oid,)).fetchall()
    columns, fixes = [], []
    storage = {"p": "PLAIN", "e": "EXTERNAL", "m": "MAIN", "x": "EXTENDED"}
    for (name, type_, local, collation, not_null, default, generated, identity, odd_storage, attstorage,
         parent_not_null, parent_default) in rows:
        column = quote_ident(name)
        if local:
            text = f"{column} {type_}"
            if collation:
                text += f" COLLATE {collation}"
            if generated:
                text += f" GENERATED ALWAYS AS ({default}) STORED"
            elif default is not None:
                text += f" DEFAULT {default}"
            if identity:
                text += f" GENERATED {'ALWAYS' if identity == 'a' else 'BY DEFAULT'} AS IDENTITY"
            if not_null and not identity:
                text += " NOT NULL"
            columns.append(text)
        else:
            if default is not None and not parent_default and not generated:
                fixes.append(f"ALTER COLUMN {column} SET DEFAULT {default}")
            if not_null and not parent_not_null:
                fixes.append(f"ALTER COLUMN {column} SET NOT NULL")
        if odd_storage:
            fixes.append(f"ALTER COLUMN {column} SET STORAGE {storage[attstorage]}")
    return columns, fixes


def _grantee(name: str | None) -> str:
    return "PUBLIC" if name is None else quote_ident(name)


def relation_grants(conn: psycopg.Connection, oid: int, on: str) -> tuple[list[str], set[str] | None]:
    """A relation's ACL as GRANTs to the roles other than its owner, in the ACL's own order (which
    pg_dump prints), each with "{target}" where its name goes; and the privileges the owner holds
    (None: no ACL, the defaults). `on` is TABLE or SEQUENCE."""
    rows = conn.execute(
        """
        SELECT CASE WHEN a.grantee <> 0 THEN pg_catalog.pg_get_userbyid(a.grantee) END, a.privilege_type,
               a.is_grantable, a.grantee = c.relowner
        FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) WITH ORDINALITY a WHERE c.oid = %s
        ORDER BY a.ordinality
        """, (oid,)).fetchall()
    grants = [f"GRANT {privilege} ON {on} {{target}} TO {_grantee(name)}" + (" WITH GRANT OPTION" if grantable else "")
              for name, privilege, grantable, is_owner in rows if not is_owner]
    held = {privilege for _, privilege, _, is_owner in rows if is_owner} if rows else None
    return grants, held


def _grants(conn: psycopg.Connection, oid: int) -> tuple[list[str], list[str]]:
    """Table and column privileges as GRANTs, and what the owner was refused."""
    grants, held = relation_grants(conn, oid, "TABLE")
    revoke = []
    if held is not None:
        every = ["INSERT", "SELECT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "MAINTAIN"]
        if conn.info.server_version < 170000:
            every.remove("MAINTAIN")
        revoke = [p for p in every if p not in held]
    columns = conn.execute(
        """
        SELECT t.attname, CASE WHEN a.grantee <> 0 THEN pg_catalog.pg_get_userbyid(a.grantee) END, a.privilege_type,
               a.is_grantable
        FROM pg_catalog.pg_attribute t, pg_catalog.aclexplode(t.attacl) WITH ORDINALITY a
        WHERE t.attrelid = %s AND t.attacl IS NOT NULL ORDER BY t.attnum, a.ordinality
        """, (oid,)).fetchall()
    grants += [f"GRANT {privilege} ({quote_ident(column)}) ON TABLE {{target}} TO {_grantee(name)}"
               + (" WITH GRANT OPTION" if grantable else "") for column, name, privilege, grantable in columns]
    return grants, revoke


def _column_settings(conn: psycopg.Connection, oid: int) -> list[str]:
    """Per-column statistics targets and options (n_distinct and the like), which LIKE leaves behind."""
    rows = conn.execute(
        """
        SELECT attname, CASE WHEN attstattarget >= 0 THEN attstattarget END, attoptions
        FROM pg_catalog.pg_attribute
        WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped
          AND ((attstattarget IS NOT NULL AND attstattarget >= 0) OR attoptions IS NOT NULL)
        ORDER BY attnum
        """, (oid,)).fetchall()
    clauses = []
    for name, target, options in rows:
        if target is not None:
            clauses.append(f"ALTER COLUMN {quote_ident(name)} SET STATISTICS {int(target)}")
        if options:
            clauses.append(f"ALTER COLUMN {quote_ident(name)} SET ({_options(options)})")
    return clauses


def _options(options: list[str]) -> str:
    """reloptions-style `key=value` items as an option list PostgreSQL reads back."""
    items = []
    for option in options:
        key, _, value = option.partition("=")
        items.append(f"{key} = {quote_literal(value)}")
    return ", ".join(items)


_POLICY_COMMANDS = {"r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE", "*": "ALL"}


def _policies(conn: psycopg.Connection, oid: int) -> list[tuple[str, str, str | None]]:
    rows = conn.execute(
        """
        SELECT p.polname, p.polcmd, p.polpermissive,
               ARRAY(SELECT CASE WHEN r = 0 THEN NULL ELSE pg_catalog.pg_get_userbyid(r) END
                     FROM unnest(p.polroles) r ORDER BY 1),
               pg_catalog.pg_get_expr(p.polqual, p.polrelid), pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid),
               pg_catalog.obj_description(p.oid, 'pg_policy')
        FROM pg_catalog.pg_policy p WHERE p.polrelid = %s ORDER BY 1
        """, (oid,)).fetchall()
    policies = []
    for name, command, permissive, roles, qual, check, comment in rows:
        text = (f"CREATE POLICY {quote_ident(name)} ON {{target}} AS {'PERMISSIVE' if permissive else 'RESTRICTIVE'} "
                f"FOR {_POLICY_COMMANDS[command]} TO {', '.join(_grantee(r) for r in roles)}")
        if qual is not None:
            text += f" USING ({qual})"
        if check is not None:
            text += f" WITH CHECK ({check})"
        policies.append((name, text, comment))
    return policies


def _identity_sequences(conn: psycopg.Connection, oid: int) -> tuple[dict[str, str], dict[str, list[str]]]:
    rows = conn.execute(
        """
        SELECT a.attname, s.relname, s.oid
        FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'
        JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = %s AND d.deptype = 'i'
        """, (oid,)).fetchall()
    names, grants = {}, {}
    for column, name, sequence in rows:
        names[column] = name
        grants[column] = relation_grants(conn, sequence, "SEQUENCE")[0]
    return names, grants


def create_empty(conn: psycopg.Connection, shape: Shape, names: ShadowNames) -> None:
    """The copy, empty, in the private schema: columns and what belongs to them, owner and settings."""
    copy = names.new_regclass(shape.ref)
    persistence = "UNLOGGED " if shape.unlogged else ""
    if shape.parent is not None:
        parts = [f"CREATE {persistence}TABLE {copy} PARTITION OF {names.new_regclass(shape.parent)} FOR VALUES "
                 if shape.bound != "DEFAULT" else f"CREATE {persistence}TABLE {copy} PARTITION OF "
                 f"{names.new_regclass(shape.parent)} DEFAULT"]
        if shape.bound != "DEFAULT":
            parts[0] += shape.bound.removeprefix("FOR VALUES ")
    elif shape.inherits:
        # Only the child's own columns, so the copy's inherited columns are inherited, as the live ones.
        parents = ", ".join(names.new_regclass(p) for p in shape.inherits)
        parts = [f"CREATE {persistence}TABLE {copy} ({', '.join(shape.local_columns)}) INHERITS ({parents})"]
    else:
        parts = [f"CREATE {persistence}TABLE {copy} (LIKE {shape.regclass} INCLUDING COMMENTS INCLUDING COMPRESSION "
                 "INCLUDING CONSTRAINTS INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING IDENTITY INCLUDING STORAGE)"]
    if shape.partition_key:
        parts.append(f"PARTITION BY {shape.partition_key}")
    if shape.access_method:
        parts.append(f"USING {quote_ident(shape.access_method)}")
    if shape.reloptions:
        parts.append(f"WITH ({_options(shape.reloptions)})")
    if shape.tablespace:
        parts.append(f"TABLESPACE {quote_ident(shape.tablespace)}")
    conn.execute(" ".join(parts))
    if not shape.owned_by_me:
        conn.execute(f"ALTER TABLE {copy} OWNER TO {quote_ident(shape.owner)}")
    revoke_default_privileges(conn, copy)
    if shape.column_settings or shape.local_checks or shape.column_fixes:
        conn.execute(f"ALTER TABLE {copy} " + ", ".join([*shape.column_fixes, *shape.column_settings,
                                                          *shape.local_checks]))
    for column, comment in shape.column_comments:
        conn.execute(f"COMMENT ON COLUMN {copy}.{quote_ident(column)} IS {quote_literal(comment)}")


def revoke_default_privileges(conn: psycopg.Connection, relation: str) -> None:
    """Take back what ALTER DEFAULT PRIVILEGES granted on a relation just created: the live one's grants follow."""
    conn.execute(f"REVOKE ALL ON TABLE {relation} FROM PUBLIC")
    extra = conn.execute(
        "SELECT DISTINCT pg_catalog.pg_get_userbyid(a.grantee) FROM pg_catalog.pg_class c, "
        "pg_catalog.aclexplode(c.relacl) a WHERE c.oid = %s::pg_catalog.regclass AND a.grantee NOT IN (0, c.relowner)",
        (relation,)).fetchall()
    for (role,) in extra:
        conn.execute(f"REVOKE ALL ON TABLE {relation} FROM {quote_ident(role)}")


def index_statements(shape: Shape, names: ShadowNames, copies: dict[str, str]) -> list[list[str | sql.Composed]]:
    """Each index tree of the table as statements for its copy, under the live index's own name.

    `copies` maps every live relation's regclass text to its copy's (a tree spans the partitions).
    A partitioned index is built as pg_dump restores it: the parent ON ONLY, each partition's own
    index under its own name, then attached deepest first.
    """
    result = []
    for tree in shape.indexes:
        statements, attach, properties = [], [], []
        moved_by_name = {}
        for node in tree:
            copy = copies[node.table]
            schema = quote_ident(_schema_of(names, node))
            moved = replace(node, table=copy, name=f"{schema}.{quote_ident(node.short_name)}",
                            definition=_retarget(node.definition, node.table, copy, " ON ", " USING "))
            moved_by_name[node.name] = moved
            # (Not on an inheritance child: there PostgreSQL 18 would make the inherited NOT NULL its own.)
            if moved.constraint and len(tree) == 1 and not shape.inherits and _by_index(moved.constraint_def):
                # Built as an index first, then made the key: CREATE INDEX shares the table with
                # other index builds, where ADD PRIMARY KEY would lock them out for the whole build.
                statements.append(_create_index(moved))
                kind = "PRIMARY KEY" if moved.constraint_def.startswith("PRIMARY KEY") else "UNIQUE"
                statements.append(f"ALTER TABLE ONLY {copy} ADD CONSTRAINT {quote_ident(moved.constraint)} {kind} "
                                  f"USING INDEX {quote_ident(moved.short_name)}")
            elif moved.constraint:
                statements.append(f"ALTER TABLE ONLY {copy} ADD CONSTRAINT {quote_ident(moved.constraint)} "
                                  f"{moved.constraint_def}")
            else:
                statements.append(_create_index(moved))
            properties += index_properties(moved)
        for node in sorted(tree[1:], key=lambda n: -n.depth):
            attach.append(f"ALTER INDEX {moved_by_name[node.parent].name} ATTACH PARTITION {moved_by_name[node.name].name}")
        result.append(statements + attach + properties)
    return result


def _by_index(constraint_def: str) -> bool:
    """A key that ADD CONSTRAINT ... USING INDEX makes from a plain unique index: not deferrable, not exclusion."""
    return constraint_def.startswith(("PRIMARY KEY", "UNIQUE")) and "DEFERRABLE" not in constraint_def


def _schema_of(names: ShadowNames, node: IndexNode) -> str:
    """The private schema an index's copy lives in: its table's (the index's own name is schema-qualified)."""
    return names.new[node.table_key.split(".", 1)[0]]


def _create_index(node: IndexNode) -> str:
    """CREATE INDEX in the live index's tablespace: pg_get_indexdef leaves it out, and where rebuild
    sets default_tablespace, a copy names it (a WHERE clause comes last)."""
    if not node.tablespace:
        return node.definition
    head, where, predicate = node.definition.partition(" WHERE ")
    return f"{head} TABLESPACE {quote_ident(node.tablespace)}{where}{predicate}"


def _retarget(definition: str, live: str, copy: str, before: str, after: str) -> str:
    """`definition` with the live table's name, where the deparser prints it, replaced by the copy's."""
    for only in ("ONLY ", ""):
        needle = f"{before}{only}{live}{after}"
        if needle in definition:
            return definition.replace(needle, f"{before}{only}{copy}{after}", 1)
    raise ValueError(f"cannot find {live} in {definition!r}")


def trigger_statements(shape: Shape, names: ShadowNames) -> list[str]:
    copy = names.new_regclass(shape.ref)
    statements = []
    for name, definition, enabled, comment in shape.triggers:
        statements.append(_retarget(definition, shape.regclass, copy, " ON ", " "))
        mode = {"O": None, "D": "DISABLE", "R": "ENABLE REPLICA", "A": "ENABLE ALWAYS"}[enabled]
        if mode:
            statements.append(f"ALTER TABLE {copy} {mode} TRIGGER {quote_ident(name)}")
        if comment is not None:
            statements.append(f"COMMENT ON TRIGGER {quote_ident(name)} ON {copy} IS {quote_literal(comment)}")
    return statements


def settings_statements(shape: Shape, names: ShadowNames) -> list[str]:
    """Policies, row security, replica identity, grants and the table's comment, on the copy."""
    copy = names.new_regclass(shape.ref)
    statements = []
    for name, policy, comment in shape.policies:
        statements.append(policy.replace("{target}", copy, 1))  # the expression may hold braces
        if comment is not None:
            statements.append(f"COMMENT ON POLICY {quote_ident(name)} ON {copy} IS {quote_literal(comment)}")
    if shape.row_security:
        statements.append(f"ALTER TABLE {copy} ENABLE ROW LEVEL SECURITY")
    if shape.force_row_security:
        statements.append(f"ALTER TABLE {copy} FORCE ROW LEVEL SECURITY")
    identity = {"n": "NOTHING", "f": "FULL"}.get(shape.replica_identity)
    if identity:
        statements.append(f"ALTER TABLE {copy} REPLICA IDENTITY {identity}")
    statements += [grant.replace("{target}", copy, 1) for grant in shape.grants]
    if shape.revoke_from_owner:
        statements.append(f"REVOKE {', '.join(shape.revoke_from_owner)} ON TABLE {copy} FROM {quote_ident(shape.owner)}")
    if shape.comment is not None:
        statements.append(f"COMMENT ON TABLE {copy} IS {quote_literal(shape.comment)}")
    return statements
