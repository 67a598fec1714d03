"""A Redis Sentinel group of the tests' own, started by the stack's own code
(deploy/stack/ha.py, as `ticketing up --ha` starts it): a primary (``redis``), a replica
(``redis-replica``) and three Sentinels, each a redis-server process on the ports of a free port
layout, in a temporary state directory of its own, with AOF on. Started ready (the replica in
sync, every Sentinel knowing the replica and the two other Sentinels) and stopped, directories
removed. Which node is the primary is asked the way the stack asks (ha.current_primary_port)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from deploy.stack import ha
from deploy.stack.ports import HOST, Ports
from deploy.stack.state import StateDir
from tests.conftest import pick_port_layout

MASTER_NAME = ha.MASTER_NAME


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Node:
    role: str
    port: int
    directory: Path
    process: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.port, socket_timeout=2, socket_connect_timeout=2)


@dataclass
class SentinelGroup:
    primary: Node
    replica: Node
    ports: Ports
    sentinels: list[Node] = field(default_factory=list)
    master_name: str = MASTER_NAME

    @property
    def sentinel_addresses(self) -> list[str]:
        return [s.address for s in self.sentinels]

    def master_port(self) -> int | None:
        """The primary's port as the Sentinels' majority reports it (None: no answer yet)."""
        return ha.current_primary_port(self.ports)


def _wait(what: str, check, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError):
            if check():
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"redis sentinel group: {what} not ready after {timeout:.0f} s")
        time.sleep(0.1)


def _answers(node: Node) -> bool:
    with node.client() as client:
        return bool(client.ping())


def _in_sync(node: Node) -> bool:
    with node.client() as client:
        return bool(client.info("replication")["master_link_status"] == "up")


def _sentinel_ready(node: Node, master_name: str) -> bool:
    with node.client() as client:
        state = client.sentinel_master(master_name)
    return int(state["num-slaves"]) >= 1 and int(state["num-other-sentinels"]) >= 2


@contextlib.contextmanager
def sentinel_group() -> Iterator[SentinelGroup]:
    layout = pick_port_layout()
    ports = Ports(gateway=layout.gateway, base=layout.base)
    root = Path(tempfile.mkdtemp(prefix="ticketing-sentinel-"))
    state = StateDir(root)
    nodes: list[Node] = []

    def start(role: str, name: str, argv: list[str]) -> Node:
        directory = ha.redis_node_dir(state, name)
        log = (directory / f"{role}.log").open("wb")
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=directory)
        nodes.append(Node(role, ports.of(name), directory, process))
        return nodes[-1]

    try:
        first, second = ha.REDIS_NODES
        primary = start("primary", first, ha.redis_node_argv(state, ports, first))
        _wait("the primary", lambda: _answers(primary))
        replica = start("replica", second, ha.redis_node_argv(state, ports, second))
        _wait("the replica", lambda: _in_sync(replica))
        group = SentinelGroup(primary, replica, ports)
        for name in ha.SENTINELS:
            group.sentinels.append(start("sentinel", name, ha.sentinel_argv(state, ports, name)))
        for node in group.sentinels:
            _wait(f"sentinel {node.address}", lambda n=node: _sentinel_ready(n, MASTER_NAME))
        yield group
    finally:
        for node in nodes:
            if node.process.poll() is None:
                node.process.terminate()
        for node in nodes:
            try:
                node.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)
