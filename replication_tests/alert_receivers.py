"""What the alert tests send to: a local HTTP server answering as Slack's Web API and as a
webhook, and a real SMTP server (aiosmtpd) with STARTTLS and a login, under a certificate the
test makes, which the senders trust through SSL_CERT_FILE as they would a company's own CA.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import threading
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SLACK_TOKEN = "xoxb-test-token-7d1f0c2a9e"
WEBHOOK_SECRET_PATH = "/hooks/T000-secret-path-4b9e"
SMTP_USER = "alerts@example.test"
SMTP_PASSWORD = "smtp-password-c41e9"


@dataclass
class Received:
    slack: list[dict] = field(default_factory=list)
    webhook: list[dict] = field(default_factory=list)
    email: list[Message] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"slack": len(self.slack), "webhook": len(self.webhook), "email": len(self.email)}


class HttpReceiver:
    """POST /api/chat.postMessage as Slack answers it (the bot token checked), POST <secret path>
    as a webhook; everything received is kept, in order."""

    def __init__(self, received: Received):
        self.received = received
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/api/chat.postMessage":
                    if self.headers.get("Authorization") != f"Bearer {SLACK_TOKEN}":
                        receiver.received.refused.append("slack: wrong token")
                        return self._reply(200, {"ok": False, "error": "invalid_auth"})
                    message = json.loads(body)
                    receiver.received.slack.append(message)
                    return self._reply(200, {"ok": True, "channel": "C0000000001", "ts": "1700000000.000100",
                                             "message": {"text": message.get("text")}})
                if self.path == WEBHOOK_SECRET_PATH:
                    receiver.received.webhook.append(json.loads(body))
                    return self._reply(200, {"ok": True})
                receiver.received.refused.append(f"unknown path {self.path}")
                return self._reply(404, {"ok": False})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> HttpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (certificate, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class SmtpReceiver:
    """aiosmtpd on 127.0.0.1: STARTTLS required before AUTH, one user and password."""

    def __init__(self, received: Received, folder: Path):
        import ssl

        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        self.received = received
        self.certificate, key = make_certificate(folder)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certificate, key)

        def authenticate(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and (auth_data.login.decode(), auth_data.password.decode()) == (
                SMTP_USER, SMTP_PASSWORD)
            return AuthResult(success=ok, handled=False)  # False: the server answers 535 itself

        receiver = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                receiver.received.email.append(message_from_bytes(envelope.content))
                return "250 OK"

        from .conftest import free_port

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, tls_context=context,
                                     require_starttls=True, authenticator=authenticate, auth_require_tls=True)

    def __enter__(self) -> SmtpReceiver:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()

    def environment(self) -> dict[str, str]:
        """What a deployment sets for mail, and the CA the sender must trust."""
        return {"ALERT_SMTP_HOST": "127.0.0.1", "ALERT_SMTP_PORT": str(self.port), "ALERT_SMTP_USER": SMTP_USER,
                "ALERT_SMTP_PASSWORD": SMTP_PASSWORD, "ALERT_SMTP_FROM": SMTP_USER, "ALERT_SMTP_SECURITY": "starttls",
                "SSL_CERT_FILE": str(self.certificate)}
