"""A Redis Sentinel group of the tests' own: a primary, a replica and three Sentinels, each a
redis-server process (the packaged binary, deploy/stack/components.py) on a free loopback port
in a temporary directory of its own, with AOF on. Started ready (the replica in sync, every
Sentinel knowing the replica and the two other Sentinels) and stopped, directories removed."""

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

from deploy.stack.components import redis_node_argv, sentinel_argv
from deploy.stack.ports import HOST

MASTER_NAME = "ticketing"


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
    sentinels: list[Node] = field(default_factory=list)
    master_name: str = MASTER_NAME

    @property
    def sentinel_addresses(self) -> list[str]:
        return [s.address for s in self.sentinels]

    def master_port(self) -> int | None:
        """The primary's port as the Sentinels' majority reports it (None: no answer yet)."""
        seen: list[int] = []
        for node in self.sentinels:
            with contextlib.suppress(redis.RedisError), node.client() as client:
                address = client.sentinel_get_master_addr_by_name(self.master_name)
                if address:
                    seen.append(int(address[1]))
        best = max(set(seen), key=seen.count, default=None)
        return best if best is not None and seen.count(best) >= 2 else None


def _start(role: str, port: int, directory: Path, argv: list[str]) -> Node:
    log = (directory / f"{role}.log").open("wb")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=directory)
    return Node(role, port, directory, process)


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
def sentinel_group(
    master_name: str = MASTER_NAME, *, sentinels: int = 3
) -> Iterator[SentinelGroup]:
    root = Path(tempfile.mkdtemp(prefix="ticketing-sentinel-"))
    nodes: list[Node] = []
    try:
        primary_dir, replica_dir = root / "primary", root / "replica"
        primary_dir.mkdir()
        replica_dir.mkdir()
        port = free_port()
        primary = _start("primary", port, primary_dir, redis_node_argv(port, primary_dir))
        nodes.append(primary)
        _wait("the primary", lambda: _answers(primary))
        port = free_port()
        argv = redis_node_argv(port, replica_dir, replica_of=primary.port)
        replica = _start("replica", port, replica_dir, argv)
        nodes.append(replica)
        _wait("the replica", lambda: _in_sync(replica))
        group = SentinelGroup(primary, replica, master_name=master_name)
        for i in range(sentinels):
            directory = root / f"sentinel-{i}"
            directory.mkdir()
            port = free_port()
            argv = sentinel_argv(
                port, directory, primary_port=primary.port, master_name=master_name
            )
            group.sentinels.append(_start("sentinel", port, directory, argv))
            nodes.append(group.sentinels[-1])
        for node in group.sentinels:
            _wait(f"sentinel {node.address}", lambda n=node: _sentinel_ready(n, master_name))
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
