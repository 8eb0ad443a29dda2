"""Turn what went wrong into either a retry or a permanent failure that says what to fix.

Transient problems (a connection refused or lost, a timeout, a serialization failure, an I/O
error) are raised again as `TransientReplicationError`, so the asset's RetryPolicy tries again.
Everything retrying cannot fix becomes `dg.Failure(allow_retries=False)`. Every message passes
through `redact`, and causes are dropped, so no password reaches the event log.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg

from .engine.errors import ReplicationError

# SQLSTATE classes and codes worth a retry: connection exceptions, transaction rollbacks
# (serialization failure, deadlock), insufficient resources, operator intervention (admin
# shutdown, statement timeout), system and I/O errors, lock timeouts.
TRANSIENT_CLASSES = ("08", "40", "53", "57", "58")
TRANSIENT_CODES = ("55P03",)
# Connection errors without an SQLSTATE that no retry can fix.
PERMANENT_CONNECT_MESSAGES = (
    "password authentication failed",
    "no pg_hba.conf entry",
    "role \"",
    "does not exist",
    "permission denied",
    "invalid connection option",
    "sslmode",
)


class TransientReplicationError(Exception):
    """A failure that may pass by itself; the asset's RetryPolicy retries the step."""


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "********")
    return text


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def _is_transient(exc: psycopg.Error) -> bool:
    state = exc.sqlstate
    if state:
        return state.startswith(TRANSIENT_CLASSES) or state in TRANSIENT_CODES
    if isinstance(exc, psycopg.OperationalError):
        text = str(exc).lower()
        return not any(marker in text for marker in PERMANENT_CONNECT_MESSAGES)
    return False


@contextmanager
def explained_failures(where: str, secrets: Iterable[str] = ()) -> Iterator[None]:
    """Classify exceptions raised inside the block; `where` names the environment or step."""
    secrets = list(secrets)
    try:
        yield
    except dg.Failure:
        raise
    except ReplicationError as exc:
        raise dg.Failure(description=redact(str(exc), secrets), allow_retries=False) from None
    except psycopg.Error as exc:
        detail = redact(_first_line(exc), secrets)
        state = f" [SQLSTATE {exc.sqlstate}]" if exc.sqlstate else ""
        if _is_transient(exc):
            raise TransientReplicationError(
                f"{where}: {detail}{state}. This looks temporary (connection, timeout or "
                "serialization); the step will be retried by its retry policy."
            ) from None
        raise dg.Failure(
            description=(
                f"{where}: {detail}{state}. Retrying will not help: fix the credentials, the "
                "permissions or the data named here, then run the partition again. Nothing was committed."
            ),
            allow_retries=False,
        ) from None
    except PermissionError as exc:
        raise dg.Failure(
            description=f"{where}: {redact(_first_line(exc), secrets)}. Fix the file permissions of the snapshot folder.",
            allow_retries=False,
        ) from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise dg.Failure(
                description=(
                    f"{where}: the disk is full ({redact(_first_line(exc), secrets)}). Retrying into a full "
                    "disk cannot help, so no retry is scheduled: free space in SNAPSHOT_DIR or lower "
                    "snapshot.keep in replication.yaml, then run the partition again."
                ),
                allow_retries=False,
            ) from None
        raise TransientReplicationError(
            f"{where}: I/O error: {redact(_first_line(exc), secrets)}. The step will be retried."
        ) from None
