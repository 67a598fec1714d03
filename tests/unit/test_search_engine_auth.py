"""Credentials and the CA of an operator-made search engine (the OpenSearch operator, ECK:
HTTPS with the cluster's own CA, basic auth), through both official clients.

The embedded engine of the local stack speaks plain HTTP without auth, so the engine here is a
small HTTPS server on the loopback with a certificate of a development CA
(``deploy.stack.certs``) that answers only to one user and password, as the operators' engines
do. What is checked is what a user of the chart would notice: with the mounted CA and the
operator's Secret the services reach the engine; with a wrong password the engine refuses them;
with another CA the certificate is not believed (never skipped); a CA path that is not there
stops the process at start with a message naming the setting."""

from __future__ import annotations

import base64
import http.server
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from ticketing.search.v1 import search_pb2, search_pb2_grpc

from cdc_worker.settings import CdcSettings
from deploy.stack import certs
from deploy.stack.state import StateDir
from search_svc.adapters.engine import (
    EngineAuth,
    EngineRefused,
    EngineUnavailable,
    auth_from,
    connect,
)
from search_svc.settings import SearchSettings
from ticketing_common import settings
from ticketing_common.settings import SettingsError

ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "ticketing", "s3cret-for-this-test"
MATCH_ALL = {"query": {"match_all": {}}}


class _GuardedEngine(http.server.BaseHTTPRequestHandler):
    """An engine behind basic auth: 401 without the right Authorization header."""

    distribution: ClassVar[str] = "opensearch"
    seen: ClassVar[list[str]] = []

    def _reply(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _allowed(self) -> bool:
        header = self.headers.get("Authorization", "")
        self.seen.append(header)
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if header == expected:
            return True
        self._reply(401, {"error": {"type": "security_exception"}, "status": 401})
        return False

    def do_GET(self) -> None:
        if self._allowed():
            version = {"number": "3.0.0", "distribution": self.distribution}
            self._reply(200, {"version": version})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self._allowed():
            self._reply(200, {"hits": {"total": {"value": 0, "relation": "eq"}, "hits": []}})

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A development CA with a server certificate for 127.0.0.1, and an unrelated second CA."""
    state = StateDir(tmp_path_factory.mktemp("engine-ca"))
    certs.ensure_certs(state)
    other = StateDir(tmp_path_factory.mktemp("other-ca"))
    certs.ensure_certs(other)
    files = certs.files_of(state, "search")
    return {
        "ca": certs.ca_path(state),
        "cert": files.cert,
        "key": files.key,
        "other": certs.ca_path(other),
    }


@pytest.fixture(scope="module")
def https_engine(pki: dict[str, Path]) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _GuardedEngine)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["cert"], pki["key"])
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("engine", ["elasticsearch", "opensearch", "auto"])
def test_both_clients_reach_an_https_engine_with_its_ca_and_the_account(
    https_engine: str, pki: dict[str, Path], engine: str
) -> None:
    _GuardedEngine.seen.clear()
    auth = EngineAuth(username=USER, password=PASSWORD, ca_file=str(pki["ca"]))
    client = connect(https_engine, request_timeout=5, engine=engine, auth=auth)
    try:
        response = client.search("events", MATCH_ALL, timeout=5)
        assert response["hits"]["total"]["value"] == 0
        # auto asked the root endpoint with the same account, then took the OpenSearch client.
        assert client.engine == ("opensearch" if engine == "auto" else engine)
        assert _GuardedEngine.seen and all(h.startswith("Basic ") for h in _GuardedEngine.seen)
        print(f"{engine}: {len(_GuardedEngine.seen)} authenticated requests over TLS")
    finally:
        client.close()


@pytest.mark.parametrize("engine", ["elasticsearch", "opensearch"])
def test_a_wrong_password_is_refused_by_the_engine(
    https_engine: str, pki: dict[str, Path], engine: str
) -> None:
    auth = EngineAuth(username=USER, password="wrong", ca_file=str(pki["ca"]))
    client = connect(https_engine, request_timeout=5, engine=engine, auth=auth)
    try:
        with pytest.raises(EngineRefused) as err:
            client.search("events", MATCH_ALL, timeout=5)
        assert err.value.status == 401
    finally:
        client.close()


@pytest.mark.parametrize("engine", ["elasticsearch", "opensearch", "auto"])
def test_a_certificate_of_another_ca_is_not_believed(
    https_engine: str, pki: dict[str, Path], engine: str
) -> None:
    """The CA option is the one the client verifies against: another CA's file fails the
    handshake (the engine is unavailable to it), so verification is on and uses the option."""
    auth = EngineAuth(username=USER, password=PASSWORD, ca_file=str(pki["other"]))
    client = connect(https_engine, request_timeout=5, engine=engine, auth=auth)
    try:
        with pytest.raises(EngineUnavailable) as err:
            client.search("events", MATCH_ALL, timeout=5)
        text = str(err.value).lower()
        assert any(word in text for word in ("certificate", "ssl", "tls")), text
    finally:
        client.close()


def _environ(**extra: str) -> dict[str, str]:
    return {
        "TICKETING_PLAINTEXT": "true",
        "TICKETING_SEARCH_URL": "https://search.example:9200",
        "TICKETING_DATABASE_URL": "postgresql://ticketing_cdc@db:5432/ticketing",
        **extra,
    }


@pytest.mark.parametrize("cls", [SearchSettings, CdcSettings])
def test_the_settings_read_the_account_from_a_mounted_secret_file(
    tmp_path: Path, pki: dict[str, Path], cls: type[SearchSettings] | type[CdcSettings]
) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")  # a Secret's key, as mounted
    loaded = settings.load(
        cls,
        _environ(
            TICKETING_SEARCH_USERNAME=USER,
            TICKETING_SEARCH_PASSWORD_FILE=str(secret),
            TICKETING_SEARCH_CA_FILE=str(pki["ca"]),
        ),
    )
    assert auth_from(loaded) == EngineAuth(USER, PASSWORD, str(pki["ca"]))
    assert PASSWORD not in repr(auth_from(loaded))


@pytest.mark.parametrize("cls", [SearchSettings, CdcSettings])
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"TICKETING_SEARCH_CA_FILE": "/nonexistent/ca.crt"},
            "TICKETING_SEARCH_CA_FILE='/nonexistent/ca.crt' is not a readable PEM CA certificate",
        ),
        ({"TICKETING_SEARCH_CA_FILE": str(ROOT / "README.md")}, "TICKETING_SEARCH_CA_FILE="),
        (
            {"TICKETING_SEARCH_USERNAME": USER},
            "TICKETING_SEARCH_USERNAME and a password (TICKETING_SEARCH_PASSWORD",
        ),
        ({"TICKETING_SEARCH_PASSWORD": PASSWORD}, "basic auth needs both"),
        (
            {"TICKETING_SEARCH_USERNAME": USER, "TICKETING_SEARCH_PASSWORD_FILE": "/nonexistent"},
            "TICKETING_SEARCH_PASSWORD_FILE='/nonexistent' cannot be read",
        ),
        (
            {
                "TICKETING_SEARCH_USERNAME": USER,
                "TICKETING_SEARCH_PASSWORD": PASSWORD,
                "TICKETING_SEARCH_PASSWORD_FILE": "/etc/hostname",
            },
            "not both",
        ),
    ],
)
def test_bad_credentials_or_ca_settings_are_refused_by_name(
    cls: type[SearchSettings] | type[CdcSettings], extra: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as err:
        settings.load(cls, _environ(**extra))
    assert message in str(err.value)


def test_a_ca_for_a_plain_http_url_is_refused(pki: dict[str, Path]) -> None:
    environ = _environ(
        TICKETING_SEARCH_URL="http://search:9200", TICKETING_SEARCH_CA_FILE=str(pki["ca"])
    )
    with pytest.raises(SettingsError, match="is not https://"):
        settings.load(SearchSettings, environ)


@pytest.mark.parametrize("package", ["search_svc", "cdc_worker"])
def test_a_bad_ca_path_stops_the_process_at_start_naming_the_setting(package: str) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TICKETING_")},
        **_environ(TICKETING_SEARCH_CA_FILE="/nonexistent/ca.crt"),
    }
    done = subprocess.run(
        [sys.executable, "-m", package],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    print(f"{package}: exit {done.returncode}: {done.stderr.strip()[-300:]}")
    assert done.returncode == 2
    assert "TICKETING_SEARCH_CA_FILE" in done.stderr + done.stdout


def test_the_search_service_reaches_the_engine_with_the_mounted_account_and_ca(
    https_engine: str, pki: dict[str, Path], tmp_path: Path
) -> None:
    """``python -m search_svc`` as the chart starts it against an operator's engine: the
    password from a file (the mounted Secret), the CA from a file; a search reaches the engine
    authenticated over verified TLS and is answered."""
    secret = tmp_path / "password"
    secret.write_text(PASSWORD)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        listen = f"127.0.0.1:{sock.getsockname()[1]}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TICKETING_")},
        "TICKETING_LISTEN": listen,
        "TICKETING_PLAINTEXT": "true",
        "TICKETING_LOG_LEVEL": "WARNING",
        "TICKETING_SEARCH_URL": https_engine,
        "TICKETING_SEARCH_USERNAME": USER,
        "TICKETING_SEARCH_PASSWORD_FILE": str(secret),
        "TICKETING_SEARCH_CA_FILE": str(pki["ca"]),
    }
    _GuardedEngine.seen.clear()
    service = subprocess.Popen(
        [sys.executable, "-m", "search_svc"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        with grpc.insecure_channel(listen) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 90
            while True:
                try:
                    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=2)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
                assert service.poll() is None, (
                    service.stderr.read().decode()[-2000:] if service.stderr else ""
                )
                assert time.monotonic() < deadline, "search_svc did not start"
                time.sleep(0.1)
            stub = search_pb2_grpc.SearchServiceStub(channel)
            response = stub.SearchEvents(search_pb2.SearchEventsRequest(term="jazz"), timeout=30)
        assert list(response.events) == []
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        assert _GuardedEngine.seen and set(_GuardedEngine.seen) == {expected}
        print(f"search_svc: {len(_GuardedEngine.seen)} engine requests, all authenticated over TLS")
    finally:
        service.terminate()
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait(timeout=10)
