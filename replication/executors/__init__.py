"""Which executor runs the steps: `REPLICATION_EXECUTOR` picks subprocesses (the default), `docker` or `k8s`."""

from __future__ import annotations

import os

import dagster as dg

from ..config import ReplicationConfig
from ..engine.errors import ConfigurationError

EXECUTOR_VARIABLE = "REPLICATION_EXECUTOR"
EXECUTORS = ("local", "docker", "k8s")


def select_executor(config: ReplicationConfig) -> dg.ExecutorDefinition:
    choice = os.environ.get(EXECUTOR_VARIABLE, "").strip().lower() or "local"
    if choice == "docker":
        from .docker import build_docker_executor

        return build_docker_executor(config)
    if choice in ("k8s", "kubernetes"):
        # Imported here: the kubernetes client is loaded only where it is used.
        from .k8s import build_k8s_executor

        return build_k8s_executor(config)
    if choice != "local":
        raise ConfigurationError(f"{EXECUTOR_VARIABLE}={choice!r} is not an executor; write one of "
                                 f"{', '.join(EXECUTORS)} (unset means local).")
    # The loads are I/O-bound waits on their servers: let every environment's run side by side.
    workers = max(4, len(config.environments))
    # Forked from a server that has imported Dagster and this code location once, a step starts
    # in a fraction of a second; spawned, each of a run's eight steps paid about 1.5 s of imports.
    return dg.multiprocess_executor.configured(
        {"max_concurrent": workers, "start_method": {"forkserver": {"preload_modules": ["replication.definitions"]}}},
        name="replication_multiprocess",
    )
