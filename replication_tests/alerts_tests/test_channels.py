"""Each channel delivers to a real receiver (a local Slack API, a webhook, an SMTP server with
STARTTLS and a login) and fails with an error naming the variable to fix, never a secret."""

from __future__ import annotations

import pytest

from replication.alerts.channels import DeliveryError, send_email, send_slack, send_webhook
from replication.alerts.message import Alert, Problem
from replication.config import parse_config

from ..alert_receivers import SLACK_TOKEN, SMTP_PASSWORD, WEBHOOK_SECRET_PATH, HttpReceiver, Received, SmtpReceiver

ALERT = Alert(kind="run_failed", partition="2026-11-20",
              problems=(Problem("Dev", "dev_db", "dev_db from 127.0.0.1:1/dev: connection failed: Connection refused"),),
              run_id="0f1e2d3c-aaaa-bbbb-cccc-000000000001", run_url="http://ui.example/runs/0f1e2d3c-aaaa-bbbb-cccc-000000000001",
              job="database_replication_fanout")


@pytest.fixture
def received():
    return Received()


@pytest.fixture
def http(received):
    with HttpReceiver(received) as receiver:
        yield receiver


def settings(http_url: str = "http://127.0.0.1:9"):
    return parse_config({"alerts": {"slack": {"channel": "#data-ops", "api_url": f"{http_url}/api/"},
                                    "webhook": {}, "email": {"to": ["oncall@example.com", "dba@example.com"]}}}).alerts


def test_slack_posts_the_message_with_its_fields_and_a_button_to_the_run(http, received, monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", SLACK_TOKEN)
    send_slack(settings(http.url), ALERT)
    (message,) = received.slack
    assert message["channel"] == "#data-ops"
    assert message["text"].splitlines()[0] == "Replication failed: Dev, partition 2026-11-20"
    for field in ("Environment: Dev", "Partition: 2026-11-20", "Step: dev_db", "Error: dev_db from 127.0.0.1:1/dev",
                  f"Run: {ALERT.run_url}"):
        assert field in message["text"]
    button = message["blocks"][-1]["elements"][0]
    assert button["url"] == ALERT.run_url


def test_slack_refusing_the_token_is_an_error_that_names_the_variable_not_the_token(http, received, monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-wrong-token-1234")
    with pytest.raises(DeliveryError) as error:
        send_slack(settings(http.url), ALERT)
    assert "invalid_auth" in str(error.value) and "SLACK_BOT_TOKEN" in str(error.value)
    assert "xoxb" not in str(error.value)
    assert received.slack == []


def test_a_channel_without_its_variable_says_which_to_set(monkeypatch):
    for name in ("SLACK_BOT_TOKEN", "ALERT_WEBHOOK_URL", "ALERT_SMTP_HOST"):
        monkeypatch.delenv(name, raising=False)
    for send, variable in ((send_slack, "SLACK_BOT_TOKEN"), (send_webhook, "ALERT_WEBHOOK_URL"),
                           (send_email, "ALERT_SMTP_HOST")):
        with pytest.raises(DeliveryError, match=f"{variable} is not set where the code location runs"):
            send(settings(), ALERT)


def test_the_webhook_receives_json_with_text_and_fields(http, received, monkeypatch):
    monkeypatch.setenv("ALERT_WEBHOOK_URL", f"{http.url}{WEBHOOK_SECRET_PATH}")
    send_webhook(settings(), ALERT)
    (payload,) = received.webhook
    assert payload["kind"] == "run_failed" and payload["environments"] == ["Dev"]
    assert payload["partition"] == "2026-11-20" and payload["run_url"] == ALERT.run_url
    assert payload["problems"] == [{"environment": "Dev", "step": "dev_db", "error": ALERT.problems[0].error}]
    assert payload["text"] == ALERT.text()


def test_a_webhook_answering_an_error_names_the_status_and_never_the_address(http, monkeypatch):
    monkeypatch.setenv("ALERT_WEBHOOK_URL", f"{http.url}/hooks/wrong-secret")
    with pytest.raises(DeliveryError, match="HTTP 404") as error:
        send_webhook(settings(), ALERT)
    assert "wrong-secret" not in str(error.value) and "127.0.0.1" not in str(error.value)


def test_mail_goes_through_starttls_and_a_login_to_every_address(received, tmp_path, monkeypatch):
    with SmtpReceiver(received, tmp_path) as smtp:
        for name, value in smtp.environment().items():
            monkeypatch.setenv(name, value)
        send_email(settings(), ALERT)
    (mail,) = received.email
    assert mail["Subject"] == "Replication failed: Dev, partition 2026-11-20"
    assert mail["To"] == "oncall@example.com, dba@example.com"
    body = mail.get_payload(decode=True).decode()
    assert "Step: dev_db" in body and ALERT.run_url in body


def test_a_wrong_mail_password_is_named_without_the_password(received, tmp_path, monkeypatch):
    with SmtpReceiver(received, tmp_path) as smtp:
        for name, value in smtp.environment().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("ALERT_SMTP_PASSWORD", "not-" + SMTP_PASSWORD)
        with pytest.raises(DeliveryError, match="refused the login of ALERT_SMTP_USER") as error:
            send_email(settings(), ALERT)
    assert SMTP_PASSWORD not in str(error.value)
    assert received.email == []


def test_mail_to_a_server_whose_certificate_is_not_trusted_fails_on_tls(received, tmp_path, monkeypatch):
    with SmtpReceiver(received, tmp_path) as smtp:
        for name, value in smtp.environment().items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("SSL_CERT_FILE")
        with pytest.raises(DeliveryError, match="TLS with the mail server"):
            send_email(settings(), ALERT)
