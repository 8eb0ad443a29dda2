"""An S3-compatible endpoint as strict as the stores that reject boto3's newer defaults.

Since boto3 1.36 every upload carries a CRC32 checksum (`x-amz-checksum-*` headers, or an
`aws-chunked` body with a trailer) and DeleteObjects no longer sends Content-MD5. Backblaze B2,
Cloudflare R2, older MinIO, Ceph and others refuse such requests. This proxy, in front of moto's
server, refuses them the same way and passes everything else through unchanged.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse


def refusal(method: str, path: str, headers) -> str | None:
    """Why a strict store refuses this request, or None."""
    names = {name.lower() for name in headers}
    checksum = sorted(n for n in names if n.startswith("x-amz-checksum-"))
    if checksum:
        return f"Unsupported header '{checksum[0]}'"
    if "x-amz-sdk-checksum-algorithm" in names:
        return "Unsupported header 'x-amz-sdk-checksum-algorithm'"
    if "aws-chunked" in headers.get("Content-Encoding", "") or "x-amz-trailer" in names \
            or headers.get("x-amz-content-sha256", "").startswith("STREAMING-"):
        return "aws-chunked transfer encoding is not supported"
    if method == "POST" and "delete" in urlparse(path).query.split("&") and "content-md5" not in names:
        return "MissingContentMD5: Missing required header for this request: Content-Md5"
    return None


class StrictS3Proxy:
    """Listens on 127.0.0.1:`port` and forwards to `upstream` (moto), refusing what strict stores refuse."""

    def __init__(self, upstream: str, port: int):
        self.upstream = urlparse(upstream)
        self.refused: list[str] = []
        self.forwarded = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                why = refusal(self.command, self.path, self.headers)
                if why is not None:
                    proxy.refused.append(f"{self.command} {self.path}: {why}")
                    payload = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InvalidRequest</Code>"
                               f"<Message>{why}</Message></Error>").encode()
                    self.send_response(400)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                proxy.forwarded += 1
                connection = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                try:
                    connection.request(self.command, self.path, body=body,
                                       headers={k: v for k, v in self.headers.items() if k.lower() != "connection"})
                    answer = connection.getresponse()
                    data = answer.read()
                    self.send_response(answer.status, answer.reason)
                    for name, value in answer.getheaders():
                        if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    connection.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.endpoint_url = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="strict s3")

    def start(self) -> "StrictS3Proxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
