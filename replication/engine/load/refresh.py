"""One environment's refresh from start to end: the guards, the snapshot verified under a lease, the
load, and retention after it. Everything the environment's step does, without Dagster: the asset
hands it connections, the snapshot and the settings, and shows what comes back."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from ..pg.connection import Address, Connect
from ..pg.locks import LockPolicy
from ..privacy.mask import MaskRule
from ..privacy.scrub import SensitiveColumns
from ..progress import Log
from ..snapshot.manifest import Manifest
from ..snapshot.retention import PruneReport, prune
from ..snapshot.verify import verify_snapshot
from ..storage import SnapshotLocation
from ..subset.plan import SubsetRule
from .guard import refuse_production_address, refuse_same_database, server_identity
from .report import LoadReport
from .dependents import Dependents
from .swap import DEFAULT_JOBS, refusal, swap_dependents, swap_snapshot
from .transaction import load_snapshot

@dataclass(frozen=True)
class Target:
    """The environment's database, and production's, which it must never be."""

    environment: str
    address: Address
    connect: Connect
    prod_address: Address
    prod_connect: Connect
    variable: str  # the environment's {ENV}_DB_CONNECTION, named when it leads to production


@dataclass(frozen=True)
class Policy:
    """What replication.yaml says of the environment, and the masking key."""

    masks: dict[str, dict[str, MaskRule]] = field(default_factory=dict)
    subset: dict[str, SubsetRule] = field(default_factory=dict)
    locks: LockPolicy = LockPolicy()
    personal_data: str = "error"  # unmasked_pii: error | warn | allow
    masking_key: str | None = None
    verify_checksums: bool = True
    load: str = "auto"  # auto | swap | in_place
    jobs: int = DEFAULT_JOBS


@dataclass
class Refreshed:
    manifest: Manifest
    report: LoadReport
    pruned: PruneReport


def refresh_environment(target: Target, snapshot: SnapshotLocation, policy: Policy, *, keep: int,
                        sensitive: SensitiveColumns, masked_columns: list[str] | tuple[str, ...] = (),
                        log: Log = print, warn: Log = print) -> Refreshed:
    """Refuse production, verify the snapshot before connecting, load it in one transaction, prune.

    `sensitive` learns the snapshot's columns as soon as the manifest is read, so an error after
    that never quotes a value of a masked or personal column.
    """
    refuse_production_address(target.environment, target.address, target.prod_address, target.variable)
    if not snapshot.files():
        verify_snapshot(snapshot)  # says which partition to materialize first
    # Shared: pruning by another run's step cannot delete the snapshot while it loads.
    with snapshot.lease(exclusive=False):
        # Verified before connecting: a damaged snapshot must not cost the target anything.
        manifest = verify_snapshot(snapshot)
        snapshot.require_identity(manifest.tables)
        sensitive.learn(manifest, masked_columns)
        log(f"Snapshot {snapshot} verified ({len(manifest.tables)} objects, sha256); loading {target.environment} "
            f"({target.address})")
        with target.connect() as conn:
            refuse_same_database(target.environment, target.address, server_identity(conn),
                                 _production_identity(target, warn), target.variable)
            mode, reason, dependents = choose_mode(conn, target.environment, policy.load,
                                                   [e.ref for e in manifest.tables])
            if reason:
                log(f"{target.environment}: load: auto loads in place, not by swap: {reason}")
            common = dict(environment=target.environment, verify_checksums=policy.verify_checksums,
                          locks=policy.locks, masks=policy.masks, masking_key=policy.masking_key,
                          subset=policy.subset, personal_data=policy.personal_data, log=log, warn=warn)
            if mode == "swap":
                report = swap_snapshot(target.connect, conn, snapshot, manifest, jobs=policy.jobs,
                                       dependents=dependents, **common)
            else:
                report = load_snapshot(conn, snapshot, manifest, **common)
                report.mode_reason = reason
    how = (f"switched in {report.switch_seconds:.3f} s after building with {report.jobs} connection(s)"
           if report.mode == "swap" else "in one transaction")
    log(f"{target.environment}: {len(report.tables)} tables, {report.total_rows:,} rows loaded {how} in "
        f"{report.seconds:.1f} s ({report.indexes_rebuilt} indexes rebuilt, {report.foreign_keys_readded} "
        "foreign keys re-validated)")
    return Refreshed(manifest, report, prune_after_load(snapshot, keep, log, warn))


def choose_mode(conn: psycopg.Connection, environment: str, load: str, tables: list
                ) -> tuple[str, str, Dependents | None]:
    """(swap or in_place, why in place when auto chose it, what is bound to the tables as the choice
    read it, for the swap to build on). `swap` that cannot run refuses here, before anything is written."""
    if load == "in_place":
        return "in_place", "", None
    found = swap_dependents(conn, tables)
    if not found.blockers:
        return "swap", "", found
    if load == "swap":
        raise refusal(environment, found.blockers)
    return "in_place", "; ".join(found.blockers), None


def _production_identity(target: Target, warn: Log):
    """Production's server identity, or None when production cannot be reached from here."""
    try:
        with target.prod_connect() as conn:
            return server_identity(conn)
    except psycopg.OperationalError:
        warn(f"Production {target.prod_address} did not answer, so only its address was compared with the target's.")
        return None


def prune_after_load(snapshot: SnapshotLocation, keep: int, log: Log, warn: Log) -> PruneReport:
    """Retention after a committed load; a failure here must not fail a load that succeeded."""
    try:
        pruned = prune(snapshot.store, keep, protect=(snapshot.name,))
    except Exception as exc:  # noqa: BLE001 - OSError on a disk, botocore's errors on a store
        warn(f"Could not prune old snapshots in {snapshot.store.location()}: {exc.__class__.__name__}: {exc}")
        return PruneReport()
    if pruned.deleted:
        log(f"Retention (snapshot.keep: {keep}): deleted {', '.join(pruned.deleted)}, "
            f"{pruned.freed_bytes / 1e6:,.1f} MB freed; {len(pruned.kept)} kept")
    if pruned.in_use:
        log(f"Retention: kept {', '.join(pruned.in_use)} for now, another step is using it")
    return pruned
