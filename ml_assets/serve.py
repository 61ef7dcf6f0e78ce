"""Serve the lake's `reports/` over http (read-only), so the report links in the Dagster UI open.

The lake is a local directory or an S3 prefix; the same server reads either through the lake's
ObjectStore. Only keys under `reports/` are served: the rest of the lake is data, not pages.
"""

from __future__ import annotations

import mimetypes
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from ml_assets.links import REPORTS_PREFIX
from ml_assets.storage import ObjectStore


def _lake_key(path: str) -> str | None:
    key = unquote(urlsplit(path).path).lstrip("/")
    parts = key.split("/")
    if not key.startswith(REPORTS_PREFIX) or any(p in ("", ".", "..") for p in parts):
        return None
    return key


def make_handler(store: ObjectStore) -> type[BaseHTTPRequestHandler]:
    class ReportsHandler(BaseHTTPRequestHandler):
        server_version = "ml-assets-reports"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._serve(with_body=True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._serve(with_body=False)

        def _serve(self, with_body: bool) -> None:
            if urlsplit(self.path).path == "/healthz":  # liveness/readiness probes
                self._reply(b"ok", "text/plain", with_body)
                return
            key = _lake_key(self.path)
            if key is None:
                self.send_error(HTTPStatus.NOT_FOUND, f"only {REPORTS_PREFIX}... is served here")
                return
            try:
                data = store.read_bytes(key)
            except Exception:  # a missing key reads as FileNotFoundError locally, ClientError on S3
                self.send_error(HTTPStatus.NOT_FOUND, f"no report at {key}")
                return
            self._reply(data, mimetypes.guess_type(key)[0] or "application/octet-stream", with_body)

        def _reply(self, data: bytes, content_type: str, with_body: bool) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if with_body:
                self.wfile.write(data)

        def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
            pass  # one line per request would drown the console `ml-assets dev` prints to

    return ReportsHandler


def reports_server(store: ObjectStore, host: str, port: int) -> ThreadingHTTPServer:
    """A server bound to host:port (port 0: a free one, see `server_address`); not started."""
    return ThreadingHTTPServer((host, port), make_handler(store))


def serve_in_thread(store: ObjectStore, host: str = "127.0.0.1", port: int = 0) -> tuple[str, Callable[[], None]]:
    """Start the server in a daemon thread; returns its base URL and a function that stops it."""
    server = reports_server(store, host, port)
    thread = threading.Thread(target=server.serve_forever, name="ml-assets-reports", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return f"http://{server.server_address[0]}:{server.server_address[1]}", stop
