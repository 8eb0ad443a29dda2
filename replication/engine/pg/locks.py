"""Taking the locks a load or a snapshot needs in short attempts, and naming whoever is in the way.

A lock request that waits sits in PostgreSQL's lock queue, and every later request that conflicts
with it queues behind it: a load waiting for ACCESS EXCLUSIVE on a table makes every new reader of
that table wait too, and the environment looks hung to everyone. So locks are requested with a
small `lock_timeout`; when the attempt times out the request leaves the queue, readers go on, and
after a back-off the engine tries again. Between attempts it looks up who holds (or waits ahead
for) a conflicting lock, logs them every few seconds, and applies the environment's policy:

- `wait`: keep trying until `lock_wait` has passed, then fail and name the blockers;
- `fail`: give brief locks (a running query) a few seconds, then fail and name the blockers;
- `terminate`: wait `lock_wait` as a grace period, then end the sessions that hold locks on the
  replicated tables themselves with pg_terminate_backend, logging each, and take the locks.

Everything happens inside the caller's transaction, before it writes anything: a failure here
leaves the environment exactly as it was.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import psycopg
from psycopg import sql

from ..errors import ReplicationError
from ..progress import Log
from .catalog import partition_tree

BlockingSessions = Literal["wait", "fail", "terminate"]

# How long one attempt may queue: short enough that readers arriving meanwhile hardly notice,
# long enough to outlast the statements of an ordinary busy database.
ATTEMPT_SECONDS = 0.25
# Between attempts; grows towards the maximum so a long blocker costs little.
FIRST_BACKOFF_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 2.0
REPORT_EVERY_SECONDS = 5.0
# `fail` still rides out locks that a running statement holds for a moment.
BRIEF_LOCK_SECONDS = 5.0
# `terminate`: after the grace period, how long to go on ending blockers (new ones may arrive,
# a terminated backend takes a moment to exit) before giving up.
TERMINATE_SECONDS = 30.0
# Once the tables are locked, how long any later statement of the transaction may wait for a lock
# (a materialized view to refresh, a sequence): bounded, never silently until the run's timeout.
MAX_WAIT_AFTER_LOCKING_SECONDS = 60.0
DEFAULT_LOCK_WAIT_SECONDS = {"wait": 180.0, "terminate": 30.0, "fail": BRIEF_LOCK_SECONDS}

# Which held lock modes conflict with the mode requested (PostgreSQL's table-level lock matrix,
# for the two modes the engine takes).
CONFLICTING_MODES = {
    "ACCESS SHARE": ("AccessExclusiveLock",),
    "ACCESS EXCLUSIVE": (
        "AccessShareLock", "RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareLock",
        "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock",
    ),
}


@dataclass(frozen=True)
class LockPolicy:
    """What to do about other sessions that hold locks the engine needs."""

    blocking_sessions: BlockingSessions = "wait"
    lock_wait: float | None = None  # None: DEFAULT_LOCK_WAIT_SECONDS for the policy
    attempt_seconds: float = ATTEMPT_SECONDS
    report_every: float = REPORT_EVERY_SECONDS
    terminate_seconds: float = TERMINATE_SECONDS

    @property
    def patience(self) -> float:
        """Seconds blockers may hold things up before the policy acts."""
        if self.blocking_sessions == "fail":
            return BRIEF_LOCK_SECONDS
        return self.lock_wait if self.lock_wait is not None else DEFAULT_LOCK_WAIT_SECONDS[self.blocking_sessions]


@dataclass(frozen=True)
class Blocker:
    """Another session holding, or queued ahead for, a lock that conflicts with the one requested."""

    pid: int | None  # None: a prepared transaction, which has no backend
    user: str | None
    application: str | None
    client: str | None
    state: str | None  # None where the role may not see other users' sessions (pg_read_all_stats)
    transaction_seconds: float | None
    relations: tuple[str, ...]
    modes: tuple[str, ...]
    granted: bool
    on_replicated_table: bool

    def describe(self, past: bool = False) -> str:
        if self.pid is None:
            return (f"a prepared transaction holding {', '.join(self.modes)} on {', '.join(self.relations)} "
                    "(COMMIT PREPARED or ROLLBACK PREPARED it)")
        facts = [f"user {self.user or '?'}", f"application {self.application or '(none)'!r}"]
        if self.state is None:
            # PostgreSQL shows other roles' sessions in full only to pg_read_all_stats.
            facts.append("client, state and transaction age not visible to this role (GRANT pg_read_all_stats shows them)")
        else:
            facts += [f"client {self.client or 'local socket'}", self.state]
            if self.transaction_seconds is not None:
                facts.append(f"transaction open {self.transaction_seconds:,.0f} s")
        holds = ("held" if past else "holds") if self.granted else "waits ahead for"
        return f"pid {self.pid} ({', '.join(facts)}) {holds} {', '.join(self.modes)} on {', '.join(self.relations)}"


class LockWaitError(ReplicationError):
    """Other sessions kept the locks the engine needs beyond what the policy allows."""

    def __init__(self, message: str, blockers: Sequence[Blocker]):
        super().__init__(message)
        self.blockers = list(blockers)


@dataclass
class LockWait:
    """How taking the locks went: for the log and the metadata."""

    seconds: float = 0.0
    attempts: int = 0
    terminated: list[str] = field(default_factory=list)  # Blocker.describe() of each session ended


_BLOCKERS = partition_tree(
    "watched", "SELECT r.oid::pg_catalog.oid, r.replicated "
               "FROM unnest(%(relations)s::pg_catalog.regclass[], %(replicated)s::pg_catalog.bool[]) AS r(oid, replicated)",
    ["replicated"]) + """
SELECT l.pid, a.usename, a.application_name, pg_catalog.host(a.client_addr), a.state,
       extract(epoch FROM pg_catalog.clock_timestamp() - a.xact_start)::pg_catalog.float8,
       array_agg(DISTINCT l.relation::pg_catalog.regclass::pg_catalog.text),
       array_agg(DISTINCT l.mode), bool_or(l.granted), bool_or(w.replicated)
FROM pg_catalog.pg_locks l
JOIN watched w ON w.oid = l.relation
LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation'
  AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())
  AND l.pid IS DISTINCT FROM pg_catalog.pg_backend_pid()
  AND l.mode = ANY(%(modes)s)
GROUP BY 1, 2, 3, 4, 5, 6
ORDER BY 6 DESC NULLS LAST, 1
"""


def find_blockers(
    conn: psycopg.Connection, relations: Sequence[str], mode: str, replicated: Sequence[str] = ()
) -> list[Blocker]:
    """Sessions holding or awaiting a lock on `relations` (or their partitions) that conflicts with `mode`."""
    names, replicated = list(relations), set(replicated)
    rows = conn.execute(_BLOCKERS, {
        "relations": names, "replicated": [name in replicated for name in names],
        "modes": list(CONFLICTING_MODES[mode]),
    }).fetchall()
    return [Blocker(pid, user, app, client, state, seconds, tuple(sorted(rels)), tuple(sorted(modes)), granted,
                    on_replicated)
            for pid, user, app, client, state, seconds, rels, modes, granted, on_replicated in rows]


def _seconds_literal(seconds: float) -> sql.Literal:
    return sql.Literal(f"{max(1, int(seconds * 1000))}ms")


def lock_statement(relations: Sequence[str], mode: str, *, only: Sequence[bool] = (), nowait: bool = False
                   ) -> sql.Composed:
    """LOCK TABLE over `relations` (quoted SQL text); `only[i]` skips i's inheritance children."""
    parts = [sql.SQL(f"ONLY {relation}" if position < len(only) and only[position] else relation)
             for position, relation in enumerate(relations)]
    return sql.SQL("LOCK TABLE {} IN {} MODE{}").format(sql.SQL(", ").join(parts), sql.SQL(mode),
                                                       sql.SQL(" NOWAIT" if nowait else ""))


def acquire(
    conn: psycopg.Connection,
    statement: sql.Composable,
    relations: Sequence[str],
    mode: str,
    policy: LockPolicy,
    *,
    who: str,
    replicated: Sequence[str] = (),
    log: Log | None = None,
) -> LockWait:
    """Run `statement` (a LOCK TABLE) in short attempts inside the open transaction, per `policy`.

    `relations` (regclass text) are what the statement locks, watched for blockers; `replicated`
    are those among them whose lockers `terminate` may end. Raises LockWaitError, having written
    nothing, when the policy gives up.
    """
    result = LockWait()
    started = time.monotonic()
    backoff = FIRST_BACKOFF_SECONDS
    last_report = started
    handled: dict[int, str | None] = {}  # pid -> why terminating it was refused, None once it was ended
    while True:
        result.attempts += 1
        if _attempt(conn, statement, policy.attempt_seconds):
            result.seconds = round(time.monotonic() - started, 3)
            if result.attempts > 1 and log is not None:
                log(f"{who}: took the locks after {result.seconds:,.1f} s and {result.attempts} attempts")
            return result
        blockers = find_blockers(conn, relations, mode, replicated)
        waited = time.monotonic() - started
        if policy.blocking_sessions == "terminate" and waited >= policy.patience:
            _terminate(conn, blockers, who, result, handled, log)
            if waited >= policy.patience + policy.terminate_seconds:
                raise _gave_up(who, policy, waited, blockers, handled, conn.info.user)
        elif waited >= policy.patience:
            raise _gave_up(who, policy, waited, blockers, handled, conn.info.user)
        if log is not None and time.monotonic() - last_report >= policy.report_every:
            last_report = time.monotonic()
            log(_waiting_line(who, policy, waited, blockers))
        time.sleep(backoff * random.uniform(0.8, 1.2))
        backoff = min(backoff * 1.5, MAX_BACKOFF_SECONDS)


def try_lock(conn: psycopg.Connection, statement: sql.Composable, lock_timeout: float | None = None) -> bool:
    """Run `statement` (a LOCK TABLE) in the open transaction, waiting at most `lock_timeout` seconds
    for it (None: the statement says, as NOWAIT does); False, and the transaction as it was, when
    the lock was not to be had."""
    conn.execute("SAVEPOINT replication_lock")
    if lock_timeout is not None:
        # Inside the savepoint: undone with it when the attempt fails.
        conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(_seconds_literal(lock_timeout)))
    try:
        conn.execute(statement)
    except psycopg.errors.LockNotAvailable:
        conn.execute("ROLLBACK TO SAVEPOINT replication_lock")
        return False
    conn.execute("RELEASE SAVEPOINT replication_lock")
    return True


def _attempt(conn: psycopg.Connection, statement: sql.Composable, seconds: float) -> bool:
    if not try_lock(conn, statement, seconds):
        return False
    conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(_seconds_literal(MAX_WAIT_AFTER_LOCKING_SECONDS)))
    return True


def _terminate(conn: psycopg.Connection, blockers: list[Blocker], who: str, result: LockWait,
               handled: dict[int, str | None], log: Log | None) -> None:
    """End the sessions that hold locks on replicated tables, each once; others are only waited for."""
    for blocker in blockers:
        if blocker.pid is None or not blocker.granted or not blocker.on_replicated_table or blocker.pid in handled:
            continue
        conn.execute("SAVEPOINT replication_terminate")
        try:
            ended = conn.execute("SELECT pg_catalog.pg_terminate_backend(%s)", (blocker.pid,)).fetchone()[0]
        except psycopg.errors.InsufficientPrivilege as exc:
            conn.execute("ROLLBACK TO SAVEPOINT replication_terminate")
            handled[blocker.pid] = str(exc.diag.message_primary or exc).strip()
            continue
        conn.execute("RELEASE SAVEPOINT replication_terminate")
        handled[blocker.pid] = None
        if ended:
            line = blocker.describe(past=True)
            result.terminated.append(line)
            if log is not None:
                log(f"{who}: terminated {line} (blocking_sessions: terminate)")


def _listed(blockers: list[Blocker]) -> str:
    if not blockers:
        return "no session holds a conflicting lock any more, but the last attempt still timed out"
    return "; ".join(b.describe() for b in blockers)


def _waiting_line(who: str, policy: LockPolicy, waited: float, blockers: list[Blocker]) -> str:
    act = {"wait": "then fail", "fail": "then fail", "terminate": "then terminate them"}[policy.blocking_sessions]
    return (f"{who}: waiting for locks, {waited:,.0f} s of {policy.patience:,.0f} s ({act}; "
            f"blocking_sessions: {policy.blocking_sessions}): {_listed(blockers)}")


def _gave_up(who: str, policy: LockPolicy, waited: float, blockers: list[Blocker], handled: dict[int, str | None],
             role: str) -> LockWaitError:
    refused = {pid: why for pid, why in handled.items() if why}
    pids = [str(b.pid) for b in blockers if b.pid is not None]
    end_them = f"End {'them' if len(pids) > 1 else 'it'} (SELECT pg_terminate_backend(pid) for pid {', '.join(pids)})" \
        if pids else "Wait for them to finish"
    if policy.blocking_sessions == "terminate":
        cause = f"after {policy.patience:,.0f} s of grace and {policy.terminate_seconds:,.0f} s of ending blockers"
        advice = f"{end_them}, or let the loading role end them: GRANT pg_signal_backend TO {role}"
        if refused:
            cause += "; terminating was refused (" + "; ".join(f"pid {pid}: {why}" for pid, why in refused.items()) + ")"
    elif policy.blocking_sessions == "fail":
        cause = f"and blocking_sessions is fail, so the load gave up after {waited:,.0f} s"
        advice = f"{end_them}, or set blocking_sessions: wait (or terminate) for {who} in replication.yaml"
    else:
        cause = f"for longer than lock_wait ({policy.patience:,.0f} s)"
        advice = (f"{end_them}, raise lock_wait, or set blocking_sessions: terminate for {who} in replication.yaml "
                  "to end such sessions after the grace period")
    return LockWaitError(
        f"{who}: other sessions kept the tables locked {cause}: {_listed(blockers)}. Nothing was written. "
        f"{advice}; then run the partition again.",
        blockers,
    )


# --- the lock table ---------------------------------------------------------------------------

class LockTableFullError(ReplicationError):
    """The server's shared lock table cannot hold every lock the transaction needs."""


# Server processes that each get max_locks_per_transaction slots in the shared lock table.
_LOCK_SLOTS = """
SELECT pg_catalog.current_setting('max_locks_per_transaction')::pg_catalog.int4,
       pg_catalog.current_setting('max_connections')::pg_catalog.int4
       + coalesce(pg_catalog.current_setting('autovacuum_worker_slots', true),
                  pg_catalog.current_setting('autovacuum_max_workers'))::pg_catalog.int4 + 1
       + pg_catalog.current_setting('max_worker_processes')::pg_catalog.int4
       + pg_catalog.current_setting('max_wal_senders')::pg_catalog.int4
       + pg_catalog.current_setting('max_prepared_transactions')::pg_catalog.int4
"""

_LOCKS_NEEDED = partition_tree("rels", "SELECT unnest(%s::pg_catalog.regclass[])::pg_catalog.oid") + """
SELECT count(*)
       + %s * (SELECT count(*) FROM pg_catalog.pg_index x WHERE x.indrelid IN (SELECT oid FROM rels))
       + 2 * count(*) FILTER (WHERE c.reltoastrelid <> 0)
FROM rels JOIN pg_catalog.pg_class c ON c.oid = rels.oid
"""


def locks_needed(conn: psycopg.Connection, tables: Sequence, *, exclusive: bool) -> int:
    """About how many objects a transaction locks over `tables` (TableRef): the tables, their
    partitions, indexes and TOAST; a load also locks the indexes it rebuilds, under new names."""
    names = [t.ident.as_string(conn) for t in tables]
    return int(conn.execute(_LOCKS_NEEDED, (names, 2 if exclusive else 1)).fetchone()[0])


def _lock_table_message(conn: psycopg.Connection, needed: int, who: str, what: str) -> str:
    per_slot, slots = conn.execute(_LOCK_SLOTS).fetchone()
    advised = -(-needed // slots) + per_slot
    return (
        f"{who}: {what}: this transaction locks about {needed:,} tables, partitions and indexes, and the server's "
        f"lock table is sized for max_locks_per_transaction ({per_slot}) x {slots} server processes = "
        f"{per_slot * slots:,} locks, shared by every session. Set max_locks_per_transaction to at least {advised} "
        f"in postgresql.conf and restart PostgreSQL (when several environments load into this server at once, "
        f"their locks add up: size it for all of them), or replicate fewer tables per run. Nothing was loaded; "
        f"retrying cannot help."
    )


def lock_table_full(conn: psycopg.Connection, exc: psycopg.errors.OutOfMemory, tables: Sequence, who: str,
                    *, exclusive: bool) -> Exception:
    """PostgreSQL's "out of shared memory" turned into what to change, or the error itself otherwise.

    No check beforehand: PostgreSQL fits more locks than its formula promises, so a refusal in
    advance would stop loads that would have succeeded.
    """
    hint = (exc.diag.message_hint or "") if exc.diag else ""
    if "max_locks_per_transaction" not in hint:
        return exc
    conn.rollback()
    needed = locks_needed(conn, tables, exclusive=exclusive)
    conn.rollback()
    return LockTableFullError(_lock_table_message(conn, needed, who, f"PostgreSQL ran out of lock slots "
                                                                      f"({exc.diag.message_primary}; HINT: {hint})"))
