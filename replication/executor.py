"""Which executor runs the steps: subprocesses locally, one Docker container per step in production."""

from __future__ import annotations

import os

import dagster as dg
from dagster_docker import docker_executor


def select_executor() -> dg.ExecutorDefinition:
    """`REPLICATION_EXECUTOR=docker` selects docker_executor; anything else the multiprocess executor."""
    if os.environ.get("REPLICATION_EXECUTOR", "").lower() == "docker":
        return docker_executor
    # The three loads are I/O-bound waits on their servers: let them run side by side.
    return dg.multiprocess_executor.configured({"max_concurrent": 4}, name="replication_multiprocess")
