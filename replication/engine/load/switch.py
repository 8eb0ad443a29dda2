"""The swap's one short transaction: yesterday's tables out, the new ones in, every dependent re-pointed.

Nothing here reads or writes table data except what PostgreSQL must: renames and schema moves
touch the catalog only, so readers wait for the locks and no longer than that. The locks are
taken first, in short attempts under the environment's `blocking_sessions` and `lock_wait`; a
failure anywhere rolls everything back and the environment keeps serving the previous day.
After COMMIT the outgoing tables sit in a private schema until `drop_outgoing` removes them.
"""

from __future__ import annotations

import time

import psycopg
from psycopg import sql

from ..pg.catalog import TableRef, quote_ident
from ..pg.locks import LockPolicy, LockWait, acquire, lock_statement
from ..progress import Log
from .clone import Shape, revoke_default_privileges
from .dependents import Dependents
from .rebuild import ForeignKey, add_foreign_key
from .shadow import ShadowNames, drop_private


def switch(conn: psycopg.Connection, tables: list[TableRef], every: list[TableRef], names: ShadowNames,
           shapes: dict[TableRef, Shape], found: Dependents, policy: LockPolicy, who: str, log: Log | None,
           inside: list | None = None, partitioned: set[TableRef] = frozenset()) -> tuple[LockWait, float]:
    """Exchange the live tables (`every`: with their partitions) for the new copies in one transaction;
    returns the lock wait and the seconds the tables were held.

    `inside` are callables run last inside the transaction (sequences), given the connection.
    """
    relations = [t.quoted for t in tables] + found.locked
    # Without ONLY a partitioned table's lock covers its partitions.
    statement = lock_statement(relations, "ACCESS EXCLUSIVE",
                               only=[t not in partitioned for t in tables] + [True] * len(found.locked))
    conn.autocommit = False
    with conn.transaction():
        waited = acquire(conn, statement, relations, "ACCESS EXCLUSIVE", policy, who=who,
                         replicated=[t.quoted for t in tables], log=log)
        locked = time.monotonic()
        for fk in found.outside_foreign_keys:
            conn.execute(f"ALTER TABLE {fk.child_relation} DROP CONSTRAINT {quote_ident(fk.name)}")
        for sequence, _, _ in found.serial_sequences:
            conn.execute(f"ALTER SEQUENCE {sequence} OWNED BY NONE")
        for view in found.materialized_views:
            conn.execute(f"DROP MATERIALIZED VIEW {view.regclass}")
        for publication in found.publications:
            # Yesterday's table leaves the publication with its name; the new one joins below.
            conn.execute(f"ALTER PUBLICATION {quote_ident(publication.name)} DROP TABLE ONLY {publication.table.quoted}")
        for table in every:
            conn.execute(sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(table.ident, sql.Identifier(names.old[table.schema])))
        for table in every:
            conn.execute(sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(names.new_ref(table).ident,
                                                                        sql.Identifier(table.schema)))
            _name_identity_sequences(conn, table, shapes[table])
        for sequence, table, column in found.serial_sequences:
            conn.execute(f"ALTER SEQUENCE {sequence} OWNED BY {table.quoted}.{quote_ident(column)}")
        for view in found.views:
            conn.execute(view.statement)
        for _, function in found.functions:
            conn.execute(function)
        for view in found.materialized_views:
            conn.execute(view.create)
            revoke_default_privileges(conn, view.regclass)
            for statement in view.after:
                conn.execute(statement)
        for name in found.refreshed:
            conn.execute(f"REFRESH MATERIALIZED VIEW {name}")
        for fk in found.outside_foreign_keys:
            add_foreign_key(conn, ForeignKey(fk.name, fk.child_relation, fk.definition, fk.comment))
        for publication in found.publications:
            conn.execute(publication.statement)
        for step in inside or []:
            step(conn)
    return waited, time.monotonic() - locked


def _name_identity_sequences(conn: psycopg.Connection, table: TableRef, shape: Shape) -> None:
    """The copy's identity sequences take the live ones' names (LIKE generated theirs)."""
    for column, name in shape.identity_sequences.items():
        row = conn.execute("SELECT pg_catalog.pg_get_serial_sequence(%s, %s)::pg_catalog.regclass::pg_catalog.oid",
                           (table.quoted, column)).fetchone()
        (current,) = conn.execute("SELECT relname FROM pg_catalog.pg_class WHERE oid = %s", (row[0],)).fetchone()
        if current != name:
            conn.execute(f"ALTER SEQUENCE {quote_ident(table.schema)}.{quote_ident(current)} RENAME TO {quote_ident(name)}")


def drop_outgoing(conn: psycopg.Connection, names: ShadowNames, who: str, warn: Log | None) -> None:
    """Remove the private schemas: yesterday's tables after a switch, or a copy that never switched; autocommit.

    A failure here leaves them for the next run's sweep, which removes them before building.
    """
    for schema in [*names.old.values(), *names.new.values()]:
        try:
            if conn.closed:
                break
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.rollback()
            conn.autocommit = True
            drop_private(conn, schema)
        except psycopg.Error as exc:
            if warn is not None:
                warn(f"{who}: could not drop {schema} after the switch ({exc.__class__.__name__}: "
                     f"{str(exc).strip()}); the next run removes it.")
