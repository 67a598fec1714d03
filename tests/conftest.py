"""Fixtures shared by the test tiers: the real local stack, started once per session.

``stack`` runs ``ticketing up --detach --demo-data small`` on a fresh state directory and free
ports, yields a ``Stack`` (addresses and a ``token()`` helper) and runs ``ticketing down`` at the
end. The other fixtures help tests that start stacks of their own (``ticketing``,
``port_layout``, ``state_dir_factory``, ``stack_processes``).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from deploy.stack.keys import mint_token
from deploy.stack.ports import SPAN, Ports, is_port_free
from deploy.stack.state import StackConfig, StateDir

TICKETING = Path(sys.executable).parent / "ticketing"
# Below Linux's ephemeral range (32768+), so outgoing connections never hold our ports.
PORT_RANGE = (20000, 32000)
UP_TIMEOUT = 600
TAIL_LINES = 25

_claimed_ports: set[int] = set()


@dataclass(frozen=True)
class PortLayout:
    """A port base and a gateway port, all free when picked."""

    base: int
    gateway: int

    @property
    def ports(self) -> dict[str, int]:
        return Ports(gateway=self.gateway, base=self.base).all()

    def up_args(self) -> list[str]:
        return ["--gateway-port", str(self.gateway), "--port-base", str(self.base)]


def pick_port_layout() -> PortLayout:
    """A free range of SPAN ports plus the next one for the gateway, not handed out before."""
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(PORT_RANGE[0], PORT_RANGE[1] - SPAN - 1)
        wanted = set(range(base, base + SPAN + 1))
        if wanted & _claimed_ports or not all(is_port_free(port) for port in wanted):
            continue
        _claimed_ports.update(wanted)
        return PortLayout(base=base, gateway=base + SPAN)
    raise RuntimeError(f"no free range of {SPAN + 1} ports in {PORT_RANGE}")


def run_ticketing(
    state_dir: Path, *args: str, timeout: float = UP_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run the installed `ticketing` command on a state directory."""
    return subprocess.run(
        [str(TICKETING), "--state-dir", str(state_dir), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
        env=os.environ | {"COLUMNS": "200"},
    )


def log_tails(state_dir: Path, lines: int = TAIL_LINES) -> str:
    """The last lines of every log of a stack, for failure reports."""
    parts = []
    for path in sorted((state_dir / "logs").glob("*.log")):
        text = path.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"==> {path.name} <==\n" + "\n".join(text))
    return "\n".join(parts) or f"(no logs in {state_dir / 'logs'})"


def processes_of(state_dir: Path) -> list[str]:
    """Live processes that belong to a stack: its path in their argv, cwd or environment."""
    marker = str(state_dir)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
            if stat.rsplit(")", 1)[-1].split()[0] == "Z":
                continue
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
            environ = (entry / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if marker in argv or cwd.startswith(marker) or marker in environ:
            found.append(f"{entry.name}: {argv.strip()}")
    return found


def listening(ports: dict[str, int]) -> list[str]:
    return [f"{name}:{port}" for name, port in ports.items() if not is_port_free(port)]


@dataclass
class Stack:
    """A running local stack, as tests reach it."""

    state_dir: Path
    gateway: str
    ports: dict[str, int]
    database_url: str
    redis_url: str
    search_url: str
    stripe_api_base: str
    layout: PortLayout = field(repr=False)

    def token(self, user: str, role: str = "user", **overrides: Any) -> str:
        """A JWT from the stack's development key; overrides replace claims (aud, exp, ...)."""
        return mint_token(StateDir(self.state_dir), user, role=role, **overrides)


def stack_for(state_dir: Path, layout: PortLayout) -> Stack:
    config = StackConfig(gateway_port=layout.gateway, port_base=layout.base)
    return Stack(
        state_dir=state_dir,
        gateway=config.gateway,
        ports=layout.ports,
        database_url=config.database_url,
        redis_url=config.redis_url,
        search_url=config.search_url,
        stripe_api_base=config.stripe_api_base,
        layout=layout,
    )


def start_stack(state_dir: Path, layout: PortLayout, demo_data: str = "small") -> Stack:
    """`ticketing up --detach`; on failure report the logs, stop what is left and fail."""
    started = run_ticketing(
        state_dir, "up", "--detach", "--demo-data", demo_data, *layout.up_args()
    )
    if started.returncode != 0:
        report = f"{started.stdout}\n{started.stderr}\n{log_tails(state_dir)}"
        run_ticketing(state_dir, "down", timeout=120)
        pytest.fail(f"ticketing up failed ({started.returncode}):\n{report}", pytrace=False)
    return stack_for(state_dir, layout)


def new_state_dir(prefix: str) -> Path:
    # Outside pytest's basetemp: Postgres runs as another user when tests run as root, and must
    # traverse the path; pytest resets its own tree to 0700 at every session start.
    return Path(tempfile.mkdtemp(prefix=prefix))


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """The shared stack: started once per session, stopped at the end."""
    state_dir = new_state_dir("ticketing-stack-")
    try:
        running = start_stack(state_dir, pick_port_layout(), demo_data="small")
    except BaseException:
        shutil.rmtree(state_dir, ignore_errors=True)
        raise
    try:
        yield running
    finally:
        if request.session.testsfailed:
            sys.stderr.write(f"\n--- logs of the shared stack ---\n{log_tails(state_dir)}\n")
        stopped = run_ticketing(state_dir, "down", timeout=120)
        if stopped.returncode != 0:
            sys.stderr.write(f"ticketing down failed:\n{stopped.stdout}\n{stopped.stderr}\n")
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture
def ticketing() -> Callable[..., subprocess.CompletedProcess[str]]:
    """run_ticketing(state_dir, *args): the `ticketing` command."""
    return run_ticketing


@pytest.fixture
def port_layout() -> Callable[[], PortLayout]:
    """A factory of free port layouts (never the same twice in a session)."""
    return pick_port_layout


@pytest.fixture
def state_dir_factory() -> Iterator[Callable[[], Path]]:
    """Fresh state directories; any stack left on them is stopped and they are removed."""
    made: list[Path] = []

    def make() -> Path:
        made.append(new_state_dir("ticketing-test-"))
        return made[-1]

    yield make
    for state_dir in made:
        run_ticketing(state_dir, "down", timeout=120)
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture
def stack_processes() -> Callable[[Path], list[str]]:
    """processes_of(state_dir): live processes belonging to a stack."""
    return processes_of
