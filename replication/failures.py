"""Turn what went wrong into either a retry or a permanent failure that says what to fix.

Only what a later try can fix is retried: a connection refused or lost, a server restarting, a
serialization failure or deadlock, a lock held for a moment, too many clients. Those are raised
again as `TransientReplicationError`, so the asset's RetryPolicy tries again in five minutes.
Everything else (a statement timeout, out of memory or lock slots, permission denied, a full
disk, bad data) becomes `dg.Failure(allow_retries=False)` at once, keeping PostgreSQL's DETAIL
and HINT. Every message passes through `redact` (passwords) and `engine.privacy.scrub` (production
values of masked or personal-looking columns), and causes are dropped, so neither reaches the
event log.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg

from .engine.errors import SPACE_ADVICE, ReplicationError, StoreUnreachableError, is_disk_full
from .engine.privacy.scrub import SensitiveColumns, describe_error, first_line

# SQLSTATEs a later try can fix: connection exceptions (class 08), serialization failures and
# deadlocks (class 40), a server shutting down, crashing or starting (57P01-57P03), too many
# connections, a lock held when the statement ran out of lock_timeout.
TRANSIENT_CLASSES = ("08", "40")
TRANSIENT_CODES = ("57P01", "57P02", "57P03", "53300", "55P03")
# Connection errors come without an SQLSTATE: these pass by themselves...
TRANSIENT_CONNECT_MESSAGES = (
    "too many connections",
    "too many clients",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
)
# ...and these need someone to change something.
PERMANENT_CONNECT_MESSAGES = (
    "password authentication failed",
    "no pg_hba.conf entry",
    "role \"",
    "does not exist",
    "permission denied",
    "invalid connection option",
    "sslmode",
)
# What to do about the permanent errors people meet most, by SQLSTATE (or its class).
ADVICE = {
    "57014": "A statement was cancelled by a timeout the server applied (the engine sets statement_timeout, "
             "idle_in_transaction_session_timeout and transaction_timeout to 0 in its own sessions, so look for "
             "a proxy or pooler that enforces one) or by an administrator (pg_cancel_backend).",
    "25P03": "The session was idle in a transaction for longer than a server-side limit allows.",
    "25P04": "The transaction ran longer than a server-side transaction_timeout allows.",
    "53200": "The database server ran out of memory or lock slots: act on the HINT.",
    "53100": "The database server's own disk is full: free space on it, then run the partition again.",
    "53400": "A server configuration limit was reached: raise the setting named above.",
    "42501": "Grant the role the privilege named above.",
}
DEFAULT_ADVICE = "Fix the credentials, the permissions or the data named here."


class TransientReplicationError(Exception):
    """A failure that may pass by itself; the asset's RetryPolicy retries the step."""


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "********")
    return text


def is_transient(exc: psycopg.Error) -> bool:
    state = exc.sqlstate
    if state:
        return state.startswith(TRANSIENT_CLASSES) or state in TRANSIENT_CODES
    if isinstance(exc, psycopg.OperationalError):
        text = str(exc).lower()
        if any(marker in text for marker in TRANSIENT_CONNECT_MESSAGES):
            return True
        return not any(marker in text for marker in PERMANENT_CONNECT_MESSAGES)
    return False


@contextmanager
def explained_failures(
    where: str, secrets: Iterable[str] = (), sensitive: SensitiveColumns | None = None
) -> Iterator[None]:
    """Classify exceptions raised inside the block; `where` names the environment or step.

    `sensitive` says whose values may not be shown; the block may `learn` more of it as it goes.
    Without it, every quoted value is hidden.
    """
    secrets = list(secrets)
    sensitive = sensitive if sensitive is not None else SensitiveColumns()
    try:
        yield
    except dg.Failure:
        raise
    except ReplicationError as exc:
        raise dg.Failure(description=redact(str(exc), secrets), allow_retries=False) from None
    except StoreUnreachableError as exc:
        raise TransientReplicationError(f"{where}: {redact(str(exc), secrets)}") from None
    except psycopg.Error as exc:
        detail = redact(describe_error(exc, sensitive), secrets)
        if is_transient(exc):
            raise TransientReplicationError(
                f"{where}: {detail}\nThis looks temporary (a connection, a restart, a conflict with another "
                "transaction); the step will be retried by its retry policy."
            ) from None
        advice = ADVICE.get(exc.sqlstate or "", DEFAULT_ADVICE)
        raise dg.Failure(
            description=f"{where}: {detail}\n{advice} Retrying will not help, so no retry is scheduled: fix "
                        "this, then run the partition again. Nothing was committed.",
            allow_retries=False,
        ) from None
    except PermissionError as exc:
        raise dg.Failure(
            description=f"{where}: {redact(first_line(exc), secrets)}. Fix the file permissions of the snapshot folder.",
            allow_retries=False,
        ) from None
    except OSError as exc:
        if is_disk_full(exc):
            raise dg.Failure(
                description=f"{where}: the disk is full ({redact(first_line(exc), secrets)}). No retry is "
                            f"scheduled: retrying into a full disk cannot help. {SPACE_ADVICE}",
                allow_retries=False,
            ) from None
        raise TransientReplicationError(
            f"{where}: I/O error: {redact(first_line(exc), secrets)}. The step will be retried."
        ) from None
