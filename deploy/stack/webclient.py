"""The browser client's server in the local stack: the built page, and a development sign-in.

    python -m deploy.stack.webclient --port P --state-dir DIR [--root web/dist]

The gateway routes ``/`` and ``/app/...`` here, so the page and its gRPC-Web calls share one
origin. ``make web`` builds the page into ``web/dist``; until then ``/`` says how to build it.

Development sign-in: ``POST /dev/token`` with ``{"user": "alice"}`` answers
``{"token": ..., "user": ..., "expiresIn": 3600}``, a JWT for that user with role ``user``,
signed by the stack's development key, the same as ``ticketing token --user alice``. It exists
only in the local stack and only while the gateway trusts that key: with a production issuer
configured (``ticketing up --jwks-url ...``) the gateway has no route to it and it answers 404
here too, and the page asks for a pasted token instead. It never hands out the operator role.
"""

from __future__ import annotations

import argparse
import json
import logging
import mimetypes
import re
import signal
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ticketing_common import logs

from . import gateway, keys
from .ports import HOST
from .state import REPO_ROOT, StateDir

log = logging.getLogger("ticketing.web")

DIST = REPO_ROOT / "web" / "dist"
TOKEN_TTL_SECONDS = 3600
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MAX_BODY = 4096
# The page loads only its own script and style and talks only to its own origin.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
NOT_BUILT = (
    "<!doctype html><meta charset=utf-8><title>Ticketing</title>"
    "<p>The web client is not built yet: run <code>make web</code> (or <code>make run</code>)."
)


class WebClient(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, state: StateDir, root: Path) -> None:
        self.state = state
        self.root = root.resolve()
        super().__init__((HOST, port), Handler)


class Handler(BaseHTTPRequestHandler):
    server: WebClient
    server_version = "ticketing-web"
    sys_version = ""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._send(HTTPStatus.OK, b"ok\n", "text/plain; charset=utf-8")
        elif path in ("/", "/index.html"):
            self._file("index.html", cache="no-cache")
        elif path.startswith("/app/"):
            self._file(path.lstrip("/"), cache="no-cache")
        else:
            self._json(HTTPStatus.NOT_FOUND, {"message": f"no such page: {path}"})

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/dev/token":
            self._json(HTTPStatus.NOT_FOUND, {"message": "no such endpoint"})
            return
        if not gateway.load_settings(self.server.state).jwt.development:
            # A production issuer is configured: the development key is not trusted.
            self._json(HTTPStatus.NOT_FOUND, {"message": "development sign-in is off"})
            return
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_BODY:
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"message": "body too large"})
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            user = str(body.get("user", "")).strip()
        except (ValueError, AttributeError):
            self._json(HTTPStatus.BAD_REQUEST, {"message": 'send {"user": "name"}'})
            return
        if not USER_NAME.fullmatch(user):
            self._json(
                HTTPStatus.BAD_REQUEST,
                {"message": "a user name is 1-64 letters, digits and . _ @ - (no spaces)"},
            )
            return
        token = keys.mint_token(
            self.server.state, user, role=keys.DEFAULT_ROLE, ttl=TOKEN_TTL_SECONDS
        )
        log.info("development token issued", extra={"user": user})
        self._json(HTTPStatus.OK, {"token": token, "user": user, "expiresIn": TOKEN_TTL_SECONDS})

    def _file(self, relative: str, cache: str) -> None:
        root = self.server.root
        target = (root / relative).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            if relative == "index.html":
                self._send(HTTPStatus.SERVICE_UNAVAILABLE, NOT_BUILT.encode(), "text/html")
            else:
                self._json(HTTPStatus.NOT_FOUND, {"message": f"no such file: /{relative}"})
            return
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind == "application/javascript":
            kind += "; charset=utf-8"
        self._send(HTTPStatus.OK, target.read_bytes(), kind, cache)

    def _json(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", "no-store")

    def _send(
        self, status: HTTPStatus, body: bytes, content_type: str, cache: str = "no-store"
    ) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.send_header("cache-control", cache)
        self.send_header("content-security-policy", CSP)
        self.send_header("x-content-type-options", "nosniff")
        self.send_header("referrer-policy", "no-referrer")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.info(
            format % args,
            extra={"request_id": self.headers.get("x-request-id") if self.headers else None},
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--root", type=Path, default=DIST, help="the built page (web/dist)")
    args = parser.parse_args(argv)
    logs.configure("web")
    mimetypes.add_type("application/javascript", ".js")
    mimetypes.add_type("text/css", ".css")
    server = WebClient(args.port, StateDir(args.state_dir), args.root)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    log.info("serving %s on %s:%d", args.root, HOST, args.port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
