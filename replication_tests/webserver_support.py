"""Talking to a real dagster-webserver through its GraphQL API, as the UI does."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

LOCATION = "replication"
REPOSITORY = "__repository__"
TERMINAL = ("SUCCESS", "FAILURE", "CANCELED")


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{url}/graphql", json.dumps({"query": query, "variables": variables or {}}).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.load(response)
    assert "errors" not in body, body["errors"]
    return body["data"]


def wait_for_code_location(url: str, timeout: float = 180) -> dict:
    """Wait until the webserver serves and has loaded the code location without errors."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = graphql(url, "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
                                "locationOrLoadError { __typename ... on PythonError { message } } } } } }")
            entries = data["workspaceOrError"]["locationEntries"]
            if entries and entries[0]["loadStatus"] == "LOADED":
                if entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation":
                    return entries[0]
                # The webserver may have tried before the code server listened: ask it to reload.
                graphql(url, 'mutation { reloadRepositoryLocation(repositoryLocationName: "replication") { __typename } }')
        except OSError:
            pass
        time.sleep(2)
    raise AssertionError(f"the webserver at {url} did not load the code location within {timeout:.0f} s")


def launch_run(url: str, job: str, partition: str, tags: dict[str, str] | None = None,
               asset_keys: list[str] | None = None) -> str:
    params: dict = {
        "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "pipelineName": job},
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in {"dagster/partition": partition, **(tags or {})}.items()]},
        "runConfigData": {},
    }
    if asset_keys:
        params["selector"]["assetSelection"] = [{"path": [key]} for key in asset_keys]
    data = graphql(url, """
        mutation($p: ExecutionParams!) { launchPipelineExecution(executionParams: $p) {
          __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
          ... on RunConfigValidationInvalid { errors { message } } ... on InvalidSubsetError { message } } }""",
        {"p": params})
    result = data["launchPipelineExecution"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


def run_info(url: str, run_id: str) -> dict:
    return graphql(url, """query($id: ID!) { runOrError(runId: $id) { ... on Run {
        runId status startTime endTime tags { key value } } } }""", {"id": run_id})["runOrError"]


def wait_for_run(url: str, run_id: str, timeout: float = 420) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = run_info(url, run_id)
        if info["status"] in TERMINAL:
            return info
        time.sleep(2)
    raise AssertionError(f"run {run_id} did not finish within {timeout:.0f} s")


@contextmanager
def running_dagster_dev(env: dict[str, str], cwd: Path, log_path: Path, port: int) -> Iterator[str]:
    """`dagster dev` (webserver and daemon) for the code location, as `make ui` starts it; yields its
    URL once the code location has loaded, and stops the whole process group after."""
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-m", "replication", "-h", "127.0.0.1", "-p", str(port)],
            env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for_code_location(url)
            yield url
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def find_chromium() -> str | None:
    """The system's Chromium (Debian's `chromium`), never a browser download."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_executable() -> str:
    path = find_chromium()
    if path is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; `make test` installs it when run as root)")
    return path


@contextmanager
def ui_page(executable: str, url: str):
    """(page, playwright's sync_api): a headless Chromium page at `url`, the first-visit community
    prompt dismissed."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(url, wait_until="networkidle")
            skip = page.get_by_role("button", name="Skip")
            try:
                skip.wait_for(state="visible", timeout=5000)
                skip.click()
            except sync_api.TimeoutError:
                pass
            yield page, sync_api
        finally:
            browser.close()
