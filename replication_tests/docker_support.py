"""The real Docker engine for tests: the image, a private network, a snapshot volume, clean-up."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IMAGE = "replication-code:latest"
LABEL = "replication.test"


def docker(*args: str, check: bool = True) -> str:
    return subprocess.run(["docker", *args], check=check, capture_output=True, text=True).stdout.strip()


def require_docker() -> None:
    if shutil.which("docker") is None:
        pytest.skip("no docker command on this machine")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("the Docker engine is not reachable")


_build_seconds: list[float] = []


def build_image() -> float:
    """Build the code-location image once per session as a user would; returns the seconds it took."""
    import time

    if not _build_seconds:
        started = time.monotonic()
        subprocess.run([str(REPO / "deploy" / "build-image.sh"), IMAGE], check=True, cwd=REPO)
        _build_seconds.append(time.monotonic() - started)
    return _build_seconds[0]


def create_network(prefix: str) -> tuple[str, str, str]:
    """A labelled bridge network; returns its name, gateway address and subnet."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    docker("network", "create", "--label", LABEL, name)
    ipam = json.loads(docker("network", "inspect", name, "--format", "{{json .IPAM.Config}}"))[0]
    return name, ipam["Gateway"], ipam["Subnet"]


def create_volume(prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    docker("volume", "create", "--label", LABEL, name)
    return name


def containers_on(network: str) -> list[dict]:
    ids = docker("ps", "-aq", "--filter", f"network={network}").split()
    return json.loads(docker("inspect", *ids)) if ids else []


def step_containers(network: str) -> list[dict]:
    """docker_executor's step containers on a network: name, step key, limits, exit state."""
    found = []
    for info in containers_on(network):
        env = dict(item.split("=", 1) for item in info["Config"]["Env"])
        if "DAGSTER_RUN_STEP_KEY" in env:
            found.append({
                "name": info["Name"].lstrip("/"),
                "step": env["DAGSTER_RUN_STEP_KEY"],
                "nano_cpus": info["HostConfig"]["NanoCpus"],
                "memory": info["HostConfig"]["Memory"],
                "exit_code": info["State"]["ExitCode"],
                "status": info["State"]["Status"],
                "created": info["Created"],
            })
    return found


def remove(network: str, volume: str | None) -> None:
    ids = docker("ps", "-aq", "--filter", f"network={network}").split()
    if ids:
        docker("rm", "-f", *ids, check=False)
    docker("network", "rm", network, check=False)
    if volume:
        docker("volume", "rm", "-f", volume, check=False)
