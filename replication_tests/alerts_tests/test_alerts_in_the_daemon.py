"""Alerts as operators get them: `dagster dev` (webserver and daemon) runs the code location with
Slack, a webhook and mail configured; runs are launched through the daemon's run queue, as the
schedule, the UI and backfills launch them; the messages land in a local Slack API, a webhook
receiver and a real SMTP server.

One `dagster dev` for the module, its tests in order: a successful run, a run whose Dev database
is unreachable, then the environments going stale (stale_after: 3m).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml

from replication.demo.local import LocalSetup

from ..alert_receivers import SLACK_TOKEN, SMTP_PASSWORD, WEBHOOK_SECRET_PATH, HttpReceiver, Received, SmtpReceiver
from ..conftest import free_port
from ..helpers import JOB
from ..tcp_relay import TcpRelay
from ..webserver_support import LOCATION, REPOSITORY, find_chromium, graphql, launch_run, running_dagster_dev, \
    ui_page, wait_for_run

pytestmark = pytest.mark.ui
REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"
UI_URL = "https://dagster.example.com"
STALE_AFTER_SECONDS = 180
SENSOR_INTERVAL_SECONDS = 5
CHANNELS = ("slack", "webhook", "email")


@pytest.fixture(scope="module")
def alerting(tmp_path_factory):
    root = tmp_path_factory.mktemp("alerts")
    received = Received()
    config = root / "replication.yaml"
    with HttpReceiver(received) as http, SmtpReceiver(received, root) as smtp:
        config.write_text(yaml.safe_dump({
            "environments": {"dev": {}, "staging": {}, "qa": {}},
            "alerts": {"slack": {"channel": "#data-ops", "api_url": f"{http.url}/api/"}, "webhook": {},
                       "email": {"to": ["oncall@example.com"]}, "stale_after": f"{STALE_AFTER_SECONDS}s",
                       "ui_url": UI_URL}}))
        setup = LocalSetup(root / "local", free_port())
        server = setup.start(scale=0.05)
        with TcpRelay(server.host, server.port) as dev_link:
            variables = setup.environment(server)
            variables["DEV_DB_CONNECTION"] = f"127.0.0.1:{dev_link.port}/{setup.accounts()['dev'].database}"
            secrets = {
                "SLACK_BOT_TOKEN": SLACK_TOKEN,
                "ALERT_WEBHOOK_URL": f"{http.url}{WEBHOOK_SECRET_PATH}",
                **smtp.environment(),
            }
            env = {**os.environ, **variables, **secrets, "REPLICATION_CONFIG": str(config),
                   "REPLICATION_SENSOR_INTERVAL_SECONDS": str(SENSOR_INTERVAL_SECONDS)}
            never_sent = [value for name, value in {**variables, **secrets}.items()
                          if any(word in name for word in ("PASSWORD", "TOKEN", "KEY", "WEBHOOK"))]
            try:
                with running_dagster_dev(env, REPO_ROOT, root / "dagster-dev.log", free_port()) as url:
                    yield {"url": url, "received": received, "dev_link": dev_link, "never_sent": never_sent}
            finally:
                server.stop()


def messages(received: Received) -> dict[str, list[dict]]:
    """Every message each channel received, as (kind, title, text, run_url) and the raw form."""
    kinds = {"Replication failed": "run_failed", "Replication check failed": "check_failed",
             "Environment stale": "stale"}

    def kind(title: str) -> str:
        return kinds[title.split(":")[0]]

    out = {"slack": [], "webhook": [], "email": []}
    for message in received.slack:
        title = message["text"].splitlines()[0]
        out["slack"].append({"kind": kind(title), "title": title, "text": message["text"],
                             "raw": json.dumps(message)})
    for payload in received.webhook:
        out["webhook"].append({"kind": payload["kind"], "title": payload["title"], "text": payload["text"],
                               "raw": json.dumps(payload)})
    for mail in received.email:
        body = mail.get_payload(decode=True).decode()
        out["email"].append({"kind": kind(mail["Subject"]), "title": mail["Subject"], "text": body,
                             "raw": mail.as_string()})
    return out


def last_tick(url: str, sensor: str) -> float:
    data = graphql(url, """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { __typename ... on Sensor {
        sensorState { status ticks(limit: 1) { timestamp status } } } } }""",
                   {"s": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": sensor}})
    state = data["sensorOrError"]["sensorState"]
    assert state["status"] == "RUNNING", (sensor, state)
    ticks = state["ticks"]
    return ticks[0]["timestamp"] if ticks else 0.0


def wait_for_ticks_after(url: str, moment: float, sensors: list[str], timeout: float = 120) -> None:
    """Until every sensor has evaluated at least twice after `moment` (a run's end)."""
    deadline = time.monotonic() + timeout
    seen = {sensor: 0 for sensor in sensors}
    previous = {sensor: 0.0 for sensor in sensors}
    while time.monotonic() < deadline:
        for sensor in sensors:
            tick = last_tick(url, sensor)
            if tick > moment and tick != previous[sensor]:
                seen[sensor] += 1
                previous[sensor] = tick
        if all(count >= 2 for count in seen.values()):
            return
        time.sleep(2)
    raise AssertionError(f"sensors did not tick twice after the run within {timeout:.0f} s: {seen}")


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(2)
    raise AssertionError(f"{what} within {timeout:.0f} s")


def test_a_successful_run_sends_nothing(alerting):
    url, received = alerting["url"], alerting["received"]
    run_id = launch_run(url, JOB, "2026-11-20")
    info = wait_for_run(url, run_id)
    assert info["status"] == "SUCCESS"
    wait_for_ticks_after(url, info["endTime"], [f"{channel}_on_run_failure" for channel in CHANNELS])
    assert received.counts() == {"slack": 0, "webhook": 0, "email": 0}
    assert received.refused == []


def test_a_run_failing_on_an_unreachable_dev_sends_exactly_one_message_to_each_channel(alerting, capsys):
    url, received, dev_link = alerting["url"], alerting["received"], alerting["dev_link"]
    dev_link.cut()
    try:
        run_id = launch_run(url, JOB, "2026-11-21")
        info = wait_for_run(url, run_id)
    finally:
        dev_link.restore()
    assert info["status"] == "FAILURE"

    def about_this_run():
        found = {channel: [m for m in sent if run_id in m["text"]] for channel, sent in messages(received).items()}
        return found if all(found.values()) else None

    wait_until(about_this_run, 120, "every channel received the failed run's message")
    wait_for_ticks_after(url, time.time(), [f"{channel}_on_run_failure" for channel in CHANNELS])
    found = about_this_run()
    assert {channel: len(sent) for channel, sent in found.items()} == {channel: 1 for channel in CHANNELS}
    for channel, (message,) in found.items():
        assert message["kind"] == "run_failed", channel
        assert message["title"] == "Replication failed: Dev, partition 2026-11-21", channel
        text = message["text"]
        assert "Environment: Dev" in text and "Partition: 2026-11-21" in text and "Step: dev_db" in text, text
        error = next(line for line in text.splitlines() if line.startswith("Error: "))
        assert error.startswith("Error: dev_db from dev (127.0.0.1:") and "Connection refused" in error, error
        assert f"Run: {UI_URL}/runs/{run_id}" in text
        for secret in alerting["never_sent"] + [SLACK_TOKEN, WEBHOOK_SECRET_PATH, SMTP_PASSWORD]:
            assert secret not in message["raw"], (channel, "a secret was sent")
    assert received.refused == []
    with capsys.disabled():
        print(f"\nwhat Slack received for run {run_id}:\n{found['slack'][0]['text']}")


def test_a_stale_environment_alerts_once_on_each_channel(alerting, capsys):
    url, received = alerting["url"], alerting["received"]

    def stale_environments():
        found = {channel: [m for m in sent if m["kind"] == "stale"] for channel, sent in messages(received).items()}
        named = {channel: [env for m in sent for env in ("Dev", "Staging", "QA") if f"Environment: {env}" in m["text"]]
                 for channel, sent in found.items()}
        return named if all(sorted(envs) == ["Dev", "QA", "Staging"] for envs in named.values()) else None

    wait_until(stale_environments, STALE_AFTER_SECONDS + 180, "Dev, Staging and QA were reported stale")
    # The sensors go on ticking every 5 s: nothing is sent twice.
    wait_for_ticks_after(url, time.time(), [f"{channel}_on_stale_environment" for channel in CHANNELS])
    named = stale_environments()
    for channel, environments in named.items():
        assert sorted(environments) == ["Dev", "QA", "Staging"], (channel, environments)  # each exactly once
    stale = [m for m in messages(received)["webhook"] if m["kind"] == "stale"]
    assert all("freshness_check" in m["text"] and "stale after 3 min" in m["text"] for m in stale), stale
    for sent in messages(received).values():
        for message in sent:
            for secret in alerting["never_sent"]:
                assert secret not in message["raw"]
    with capsys.disabled():
        print(f"\nwhat the webhook received first for a stale environment:\n{stale[0]['text']}")
    screenshot_of_the_stale_check(url)


def screenshot_of_the_stale_check(url: str) -> None:
    """How a stale environment looks in the UI, for the README: Staging's failed freshness check
    (Staging loaded in the run that failed on Dev, so its other checks passed)."""
    executable = find_chromium()
    if executable is None:  # the alerts above are proven; only the picture needs a browser
        return
    ARTIFACTS.mkdir(exist_ok=True)
    with ui_page(executable, f"{url}/assets/staging_db?view=checks") as (page, sync_api):
        # The checks are listed by name: freshness_check first, and shown.
        sync_api.expect(page.get_by_text("Asset is overdue for an update").first).to_be_visible(timeout=60_000)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(ARTIFACTS / "ui-stale-environment.png"))
