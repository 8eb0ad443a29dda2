"""Where an alert goes: Slack, a webhook, mail. Each sender reads its secrets from variables when
it sends (in the code location's process, where sensors run), so a step container never needs
them, and fails with `DeliveryError` naming what to fix, never the secret.
"""

from __future__ import annotations

import json
import os
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from email.message import EmailMessage

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from ..config import AlertSettings
from .message import Alert

SLACK_TOKEN = "SLACK_BOT_TOKEN"
WEBHOOK_URL = "ALERT_WEBHOOK_URL"
SMTP_HOST = "ALERT_SMTP_HOST"
SMTP_PORT = "ALERT_SMTP_PORT"
SMTP_USER = "ALERT_SMTP_USER"
SMTP_PASSWORD = "ALERT_SMTP_PASSWORD"
SMTP_FROM = "ALERT_SMTP_FROM"
# starttls (default, port 587), ssl (implicit TLS, port 465) or none (a relay inside the network, port 25).
SMTP_SECURITY = "ALERT_SMTP_SECURITY"
SMTP_VARIABLES = (SMTP_HOST, SMTP_PORT, SMTP_USER, SMTP_PASSWORD, SMTP_FROM, SMTP_SECURITY)
# Every variable a channel reads: what each deployment forwards to the code location.
VARIABLES = {"slack": (SLACK_TOKEN,), "webhook": (WEBHOOK_URL,), "email": SMTP_VARIABLES}
_DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
TIMEOUT_SECONDS = 30


class DeliveryError(Exception):
    """An alert could not be sent; the message says what to fix."""


def _variable(name: str, channel: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise DeliveryError(f"alerts.{channel} is set in replication.yaml, but {name} is not set where the code "
                            f"location runs (its sensors send the alerts): set {name} in that environment")
    return value


def send_slack(settings: AlertSettings, alert: Alert) -> None:
    slack = settings.slack
    client = WebClient(token=_variable(SLACK_TOKEN, "slack"), base_url=slack.api_url, timeout=TIMEOUT_SECONDS)
    try:
        client.chat_postMessage(channel=slack.channel, text=alert.text(), blocks=alert.slack_blocks())
    except SlackApiError as exc:
        reason = exc.response.get("error", "an error") if exc.response is not None else "an error"
        advice = {"not_in_channel": f"invite the bot to {slack.channel}",
                  "channel_not_found": "check the channel's name; a private channel needs the bot invited",
                  "invalid_auth": f"{SLACK_TOKEN} is not a valid token",
                  "not_authed": f"{SLACK_TOKEN} is empty or malformed"}.get(reason, "see Slack's chat.postMessage errors")
        raise DeliveryError(f"Slack refused the message to {slack.channel}: {reason} ({advice})") from None
    except OSError as exc:  # urllib's URLError and timeouts included
        raise DeliveryError(f"Slack's API at {slack.api_url} could not be reached: {exc}") from None


def send_webhook(settings: AlertSettings, alert: Alert) -> None:
    url = _variable(WEBHOOK_URL, "webhook")
    request = urllib.request.Request(url, data=json.dumps(alert.payload()).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    # The address is the webhook's secret: errors name the variable, never the address.
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"the webhook at {WEBHOOK_URL} answered HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DeliveryError(f"the webhook at {WEBHOOK_URL} could not be reached: {exc.reason}") from None
    except (OSError, ValueError) as exc:
        raise DeliveryError(f"the webhook at {WEBHOOK_URL} could not be reached: {exc.__class__.__name__}") from None


def send_email(settings: AlertSettings, alert: Alert) -> None:
    host = _variable(SMTP_HOST, "email")
    security = os.environ.get(SMTP_SECURITY, "").strip().lower() or "starttls"
    if security not in _DEFAULT_PORTS:
        raise DeliveryError(f"{SMTP_SECURITY} is {security!r}; write starttls, ssl or none")
    port_text = os.environ.get(SMTP_PORT, "").strip()
    if port_text and not port_text.isdigit():
        raise DeliveryError(f"{SMTP_PORT} is {port_text!r}, not a port number")
    port = int(port_text) if port_text else _DEFAULT_PORTS[security]
    user = os.environ.get(SMTP_USER, "").strip()
    password = os.environ.get(SMTP_PASSWORD, "")
    sender = os.environ.get(SMTP_FROM, "").strip() or (user if "@" in user else "")
    if not sender:
        raise DeliveryError(f"alerts.email needs a sender: set {SMTP_FROM} (or an address in {SMTP_USER})")
    message = EmailMessage()
    message["Subject"] = alert.title
    message["From"] = sender
    message["To"] = ", ".join(settings.email.to)
    message.set_content(alert.text())
    context = ssl.create_default_context()
    try:
        if security == "ssl":
            server = smtplib.SMTP_SSL(host, port, context=context, timeout=TIMEOUT_SECONDS)
        else:
            server = smtplib.SMTP(host, port, timeout=TIMEOUT_SECONDS)
        with server:
            if security == "starttls":
                server.starttls(context=context)
            if user and password:
                server.login(user, password)
            server.send_message(message)
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(f"the mail server {host}:{port} refused the login of {SMTP_USER} (SMTP {exc.smtp_code}); "
                            f"check {SMTP_USER} and {SMTP_PASSWORD}") from None
    except smtplib.SMTPException as exc:
        raise DeliveryError(f"the mail server {host}:{port} refused the alert: {exc.__class__.__name__} "
                            f"{getattr(exc, 'smtp_code', '')}".rstrip()) from None
    except ssl.SSLError as exc:
        raise DeliveryError(f"TLS with the mail server {host}:{port} failed ({exc.reason}); check {SMTP_SECURITY} "
                            "and the server's certificate") from None
    except OSError as exc:  # refused, unreachable, timed out
        raise DeliveryError(f"the mail server {host}:{port} could not be reached: {exc}") from None


SENDERS: dict[str, Callable[[AlertSettings, Alert], None]] = {
    "slack": send_slack,
    "webhook": send_webhook,
    "email": send_email,
}
