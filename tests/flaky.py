"""HTTP proxies in front of the S3 API: one answers some requests with transient errors,
one kills a build's processes at its N-th change to the bucket."""

from __future__ import annotations

import http.client
import os
import signal
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ERRORS = [
    (503, "SlowDown", "Please reduce your request rate."),
    (500, "InternalError", "We encountered an internal error. Please try again."),
]


class FlakyProxy:
    """Forwards to ``upstream``; every ``every``-th request gets a 503 or 500 instead."""

    def __init__(self, upstream: str, every: int = 5) -> None:
        self.upstream = urllib.parse.urlsplit(upstream)
        self.every = every
        self.count = 0
        self.injected = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                answer = proxy.intercept(self.command, self.path)
                if answer == "drop":
                    self.close_connection = True
                    return
                if answer is not None:
                    status, code, message = answer
                    payload = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}"
                               f"</Code><Message>{message}</Message></Error>").encode()  # fmt: skip
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = proxy.upstream.netloc
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                # A HEAD answer has no body but carries the object's length.
                length = response.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def intercept(self, method: str, path: str) -> tuple[int, str, str] | str | None:
        """An error to answer instead of forwarding, "drop" to hang up, or None."""
        with self.lock:
            self.count += 1
            if self.every and self.count % self.every == 0:
                self.injected += 1
                return ERRORS[self.injected % len(ERRORS)]
        return None

    def __enter__(self) -> FlakyProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class KillingProxy(FlakyProxy):
    """Counts the requests that change the bucket (PUT, POST, DELETE) and, at the
    ``kill_at``-th, SIGKILLs process group ``pgid`` and hangs up instead of forwarding it.
    ``changes`` lists them as (method, path) for choosing moments."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream, every=0)
        self.kill_at = 0
        self.pgid = 0
        self.changes: list[tuple[str, str]] = []

    def reset(self, kill_at: int = 0, pgid: int = 0) -> None:
        with self.lock:
            self.kill_at, self.pgid, self.changes = kill_at, pgid, []

    def intercept(self, method: str, path: str) -> tuple[int, str, str] | str | None:
        if method not in ("PUT", "POST", "DELETE"):
            return None
        with self.lock:
            self.changes.append((method, urllib.parse.unquote(path)))
            if len(self.changes) == self.kill_at and self.pgid:
                os.killpg(self.pgid, signal.SIGKILL)
                return "drop"
        return None
