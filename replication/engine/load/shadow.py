"""The private schemas a swap builds in and moves yesterday's tables out to, and what a crash leaves of them.

Each live schema gets two, named after its OID so any later run finds them without a record:
`replication_new_<oid>` holds the copy being built, `replication_old_<oid>` holds the tables the
switch moved out until they are dropped. Both belong to the loading role and grant nothing to
anyone, so no other role of the environment can see a half-built or outgoing table, whatever the
table's own grants say: a name in a schema without USAGE cannot be reached.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..pg.catalog import TableRef, quote_ident
from ..errors import ReplicationError
from ..progress import Log

NEW_PREFIX = "replication_new_"
OLD_PREFIX = "replication_old_"
# One swap per database at a time: the leftover sweep of one must not drop another's build.
SWAP_LOCK_KEY = 0x7265706C  # "repl"


@dataclass(frozen=True)
class ShadowNames:
    """Where each live schema's new and outgoing tables live during a swap."""

    new: dict[str, str]  # live schema -> schema the new copy is built in
    old: dict[str, str]  # live schema -> schema the switch moves the outgoing tables to

    def new_ref(self, ref: TableRef) -> TableRef:
        return TableRef(self.new[ref.schema], ref.name)

    def old_ref(self, ref: TableRef) -> TableRef:
        return TableRef(self.old[ref.schema], ref.name)

    def new_regclass(self, ref: TableRef) -> str:
        return f"{quote_ident(self.new[ref.schema])}.{quote_ident(ref.name)}"


def shadow_names(conn: psycopg.Connection, tables: list[TableRef]) -> ShadowNames:
    schemas = sorted({t.schema for t in tables})
    rows = conn.execute("SELECT nspname, oid FROM pg_catalog.pg_namespace WHERE nspname = ANY(%s)", (schemas,)).fetchall()
    oids = dict(rows)
    return ShadowNames({s: f"{NEW_PREFIX}{oids[s]}" for s in schemas}, {s: f"{OLD_PREFIX}{oids[s]}" for s in schemas})


def hold_swap_lock(conn: psycopg.Connection) -> None:
    """A session-level advisory lock, held until the connection closes (a crash releases it)."""
    conn.execute("SELECT pg_catalog.pg_advisory_lock(%s)", (SWAP_LOCK_KEY,))


def release_swap_lock(conn: psycopg.Connection) -> None:
    if not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        previous = conn.autocommit
        conn.autocommit = True
        conn.execute("SELECT pg_catalog.pg_advisory_unlock(%s)", (SWAP_LOCK_KEY,))
        conn.autocommit = previous


def leftovers(conn: psycopg.Connection) -> list[str]:
    """Private schemas an earlier swap left behind (it was killed before it cleaned up)."""
    rows = conn.execute(
        "SELECT nspname FROM pg_catalog.pg_namespace WHERE (nspname LIKE %s OR nspname LIKE %s) "
        "AND pg_catalog.pg_has_role(nspowner, 'USAGE') ORDER BY 1",
        (NEW_PREFIX.replace("_", r"\_") + "%", OLD_PREFIX.replace("_", r"\_") + "%"),
    ).fetchall()
    return [name for (name,) in rows]


def remove_leftovers(conn: psycopg.Connection, who: str, log: Log | None) -> list[str]:
    """Drop what a killed swap left. Autocommit; call holding the swap lock."""
    found = leftovers(conn)
    for schema in found:
        try:
            drop_private(conn, schema)
        except psycopg.errors.DependentObjectsStillExist as exc:
            detail = (exc.diag.message_detail or "").strip()
            raise ReplicationError(
                f"{who}: an interrupted load left yesterday's tables in schema {schema}, and something was made to "
                f"depend on them since ({detail}). It was not dropped with them, and nothing was written. Drop or "
                "move that object, then run the partition again.") from None
    if found and log is not None:
        log(f"{who}: removed what an interrupted load left behind: schema(s) {', '.join(found)}")
    return found


def drop_private(conn: psycopg.Connection, schema: str) -> None:
    """Drop one private schema and what it holds.

    A copy that never switched is referenced by nothing live: CASCADE. Yesterday's tables were
    re-pointed away from by the switch before it committed, so they are dropped without CASCADE:
    were anything still bound to them, the drop fails and names it rather than taking it along.
    """
    if schema.startswith(NEW_PREFIX):
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        return
    tables = [row[0] for row in conn.execute(
        "SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) "
        "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition", (schema,)).fetchall()]
    if tables:
        # One statement: inheritance parents and children go together.
        conn.execute(f"DROP TABLE {', '.join(tables)}")
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {}").format(sql.Identifier(schema)))


def create_private(conn: psycopg.Connection, schemas: list[str]) -> None:
    """Create the schemas and take back whatever default privileges would have granted on them."""
    for schema in schemas:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        # ALTER DEFAULT PRIVILEGES ... ON SCHEMAS may have granted USAGE to others.
        grantees = conn.execute(
            "SELECT DISTINCT a.grantee FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) a "
            "WHERE n.nspname = %s AND a.grantee <> n.nspowner", (schema,)).fetchall()
        for (grantee,) in grantees:
            who = sql.SQL("PUBLIC") if grantee == 0 else sql.Identifier(
                conn.execute("SELECT pg_catalog.pg_get_userbyid(%s)", (grantee,)).fetchone()[0])
            conn.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(sql.Identifier(schema), who))
