"""The real Docker engine for tests, through the Docker SDK that dagster-docker installs."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import docker
import pytest
from docker.errors import DockerException, NotFound

REPO = Path(__file__).resolve().parents[1]
IMAGE = "replication-code:latest"
LABEL = "replication.test"


def client() -> docker.DockerClient:
    return docker.from_env()


def require_docker() -> None:
    try:
        client().ping()
    except DockerException as exc:
        pytest.skip(f"the Docker engine is not reachable: {exc}")


_build_seconds: list[float] = []


def build_image() -> float:
    """Build the code-location image once per session as a user would; returns the seconds it took."""
    if not _build_seconds:
        started = time.monotonic()
        subprocess.run([str(REPO / "deploy" / "build-image.sh"), IMAGE], check=True, cwd=REPO)
        _build_seconds.append(time.monotonic() - started)
    return _build_seconds[0]


def create_network(prefix: str) -> tuple[str, str, str]:
    """A labelled bridge network; returns its name, gateway address and subnet."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    network = client().networks.create(name, driver="bridge", labels={LABEL: "true"})
    network.reload()
    ipam = network.attrs["IPAM"]["Config"][0]
    return name, ipam["Gateway"], ipam["Subnet"]


def create_volume(prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    client().volumes.create(name, labels={LABEL: "true"})
    return name


def containers_on(network: str) -> list:
    return client().containers.list(all=True, filters={"network": network})


def step_containers(network: str) -> list[dict]:
    """docker_executor's step containers on a network: name, step key, limits, exit state."""
    found = []
    for container in containers_on(network):
        info = container.attrs
        env = dict(item.split("=", 1) for item in info["Config"]["Env"])
        if "DAGSTER_RUN_STEP_KEY" in env:
            found.append({
                "name": container.name,
                "step": env["DAGSTER_RUN_STEP_KEY"],
                "nano_cpus": info["HostConfig"]["NanoCpus"],
                "memory": info["HostConfig"]["Memory"],
                "exit_code": info["State"]["ExitCode"],
                "status": info["State"]["Status"],
                "created": info["Created"],
            })
    return found


def remove(network: str, volume: str | None) -> None:
    engine = client()
    for container in containers_on(network):
        container.remove(force=True)
    try:
        engine.networks.get(network).remove()
    except NotFound:
        pass
    if volume:
        try:
            engine.volumes.get(volume).remove(force=True)
        except NotFound:
            pass
