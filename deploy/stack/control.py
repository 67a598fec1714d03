"""Find and stop a running stack from outside its supervisor (`ticketing status/down`)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from typing import Any

from . import proc
from .ports import HOST, is_port_free
from .state import StateDir, read_stack

DOWN_GRACE_SECONDS = 60.0


def supervisor_pid(state: StateDir) -> int | None:
    """The pid of the supervisor holding this state directory's lock, if one does."""
    try:
        fd = os.open(state.lock_file, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.read(fd, 32).decode().strip()
        os.close(fd)
        if text.isdigit() and int(text) > 1:
            return int(text)
        # Locked but the pid is not written yet (a supervisor starting): ask its snapshot.
        recorded = (read_stack(state) or {}).get("supervisor_pid")
        return recorded if isinstance(recorded, int) and recorded > 1 else None
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    return None


def stop_supervisor(pid: int, grace: float = DOWN_GRACE_SECONDS) -> bool:
    """SIGTERM, wait, SIGKILL after the grace; False when it had to be killed."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while proc.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not proc.pid_alive(pid):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while proc.pid_alive(pid):
        time.sleep(0.1)
    return False


def kill_leftovers(snapshot: dict[str, Any]) -> list[str]:
    """Kill components still alive after their supervisor went (if still the same program)."""
    killed = []
    for item in snapshot.get("components", []):
        pid, exe = item.get("pid"), item.get("executable")
        if not pid or not exe or not proc.pid_alive(int(pid)):
            continue
        if exe in proc.cmdline(int(pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
            killed.append(item["name"])
    return killed


def wait_ports_free(snapshot: dict[str, Any], timeout: float = 10.0) -> list[str]:
    """Wait for the stack's ports to be released; returns those still listening."""
    ports: dict[str, int] = {}
    for item in snapshot.get("components", []):
        ports |= item.get("ports") or {}
    deadline = time.monotonic() + timeout
    while True:
        busy = [f"{name} {HOST}:{port}" for name, port in ports.items() if not is_port_free(port)]
        if not busy or time.monotonic() > deadline:
            return busy
        time.sleep(0.2)
