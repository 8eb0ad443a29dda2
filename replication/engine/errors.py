"""Errors the engine raises when retrying cannot help: the user has to change something."""

import errno


class ReplicationError(Exception):
    """A permanent problem: bad configuration, a schema that does not match, a damaged snapshot."""


class ConfigurationError(ReplicationError):
    """The configuration or the environment variables are wrong or incomplete."""


class TableSelectionError(ConfigurationError):
    """The tables asked for in config do not exist in production."""


class SwapRefusedError(ConfigurationError):
    """`load: swap` was asked for and the switch cannot carry something; nothing was written."""


class SchemaMismatchError(ReplicationError):
    """A target database lacks a table or column that the snapshot holds, or cannot accept it."""


class SnapshotIncompleteError(ReplicationError):
    """The snapshot has no manifest: it was never finished and must not be loaded."""


class SnapshotCorruptError(ReplicationError):
    """A snapshot file differs from what the manifest recorded at capture time."""


class LoadVerificationError(ReplicationError):
    """Rows or checksums in a target after loading differ from the snapshot."""


class SnapshotSpaceError(ReplicationError):
    """The snapshot folder's disk filled up, or would, during a capture."""


SPACE_ADVICE = (
    "Free space there, move SNAPSHOT_DIR to a larger volume, lower snapshot.keep in replication.yaml or "
    "narrow snapshot.include; then run the partition again."
)


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def snapshot_space_error(what_happened: str) -> "SnapshotSpaceError":
    """The one message for a snapshot disk that is, or would be, full: retrying cannot help."""
    return SnapshotSpaceError(f"{what_happened} Nothing was loaded and no retry is scheduled. {SPACE_ADVICE}")


class HiddenRowsError(ReplicationError):
    """Row-level security would hide rows of a table from the reading role."""


class ProductionTargetError(ConfigurationError):
    """A target environment's address leads to the production database."""


class PrivilegeError(ReplicationError):
    """The loading role lacks a privilege that no way of loading can do without."""


class SnapshotKeyError(ReplicationError):
    """An encrypted snapshot and no identity, or the wrong one, to decrypt it."""


class StoreAccessError(ReplicationError):
    """The object store refused us: no credentials, wrong credentials, no such bucket."""


class StoreUnreachableError(Exception):
    """The object store did not answer; retried, as a database that does not answer is."""
