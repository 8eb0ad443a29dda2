"""docker_executor: one container per step on one Docker host, with the databases' variables forwarded."""

from __future__ import annotations

import os

from dagster_docker import docker_executor

from ..config import CONFIG_TEXT_VARIABLE, SOURCE, ReplicationConfig, names_for
from .steps import DOCKER_MEMORY, DOCKER_NANO_CPUS

DEFAULT_NETWORK = "replication_network"
DEFAULT_SNAPSHOT_VOLUME = "replication_snapshots"
DEFAULT_SNAPSHOT_MOUNT = "/snapshots"

# What a step container needs from the launching process besides the databases' credentials:
# Dagster's storage (the instance config reads DAGSTER_PG_* from the env) and which config file.
FORWARDED_SETTINGS = [
    "DAGSTER_PG_HOST",
    "DAGSTER_PG_PORT",
    "DAGSTER_PG_DB",
    "DAGSTER_PG_USERNAME",
    "DAGSTER_PG_PASSWORD",
    "REPLICATION_RETRY_DELAY_SECONDS",
    "MASKING_KEY",
    # The snapshot store: the standard AWS credential variables and the age identity (loaders).
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "SNAPSHOT_AGE_IDENTITY",
]


def forwarded_variables(config: ReplicationConfig) -> list[str]:
    """Production's and every configured environment's `N_DB_*` variables, then the settings above."""
    names = [var for env in (SOURCE, *config.environment_names) for var in names_for(env).variables]
    return [*names, *FORWARDED_SETTINGS]


def docker_executor_config(config: ReplicationConfig, environ: dict[str, str] | None = None) -> dict:
    """docker_executor config from REPLICATION_* variables, with defaults for the compose deployment."""
    environ = os.environ if environ is None else environ
    mount = environ.get("REPLICATION_SNAPSHOT_MOUNT", DEFAULT_SNAPSHOT_MOUNT)
    volume = environ.get("REPLICATION_SNAPSHOT_VOLUME", DEFAULT_SNAPSHOT_VOLUME)
    executor_config: dict = {
        # Only variables that are set are forwarded; SNAPSHOT_DIR is where the volume is mounted;
        # the configuration travels as text, so every step sees the run's own.
        "env_vars": [name for name in forwarded_variables(config) if name in environ]
        + [f"SNAPSHOT_DIR={mount}", f"{CONFIG_TEXT_VARIABLE}={config.to_yaml()}"],
        "network": environ.get("REPLICATION_DOCKER_NETWORK", DEFAULT_NETWORK),
        "container_kwargs": {
            "nano_cpus": DOCKER_NANO_CPUS,
            "mem_limit": DOCKER_MEMORY,
            "volumes": {volume: {"bind": mount, "mode": "rw"}},
            "labels": {"replication.step": "true"},
        },
        # Lets the assets' RetryPolicy re-run a failed step in a new container.
        "retries": {"enabled": {}},
    }
    # Without it the image comes from DAGSTER_CURRENT_IMAGE on the code location server.
    if environ.get("REPLICATION_IMAGE"):
        executor_config["image"] = environ["REPLICATION_IMAGE"]
    return executor_config


def build_docker_executor(config: ReplicationConfig):
    return docker_executor.configured(docker_executor_config(config), name="replication_docker")
