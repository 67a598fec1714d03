"""Child processes of the supervisor: start, watch, stop.

Every child runs in its own session (a Ctrl-C in the terminal reaches only the supervisor, which
then stops the children in order) and carries the Linux parent-death signal, so a supervisor that
is killed outright takes its children with it. The signal is set by a tiny exec wrapper rather
than ``preexec_fn``: the supervisor uses gRPC (which starts threads) and ``preexec_fn`` is not
safe with threads; the kernel keeps the signal across the wrapper's final ``execve``. The wrapper
also switches to another user (postgres when the supervisor is root), because that user may not
be allowed to run the supervisor's Python (a pyenv under /root, say).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

# Runs in the child (as the supervisor's user): drop to the component's user if asked, arm
# PR_SET_PDEATHSIG (1; the kernel clears it on a credential change, so it comes after), make sure
# the parent did not die before that, exec. argv: signal, parent pid, uid, gid, program...
_PDEATH_WRAPPER = (
    "import ctypes,os,sys\n"
    "uid,gid=int(sys.argv[3]),int(sys.argv[4])\n"
    "if uid>=0:\n"
    " os.setgroups([]);os.setgid(gid);os.setuid(uid)\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, int(sys.argv[1]), 0, 0, 0)\n"
    "os.getppid() == int(sys.argv[2]) or sys.exit(70)\n"
    "os.execv(sys.argv[5], sys.argv[5:])\n"
)


@dataclass
class ProcessSpec:
    """How to run one component."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: Path | None = None
    user: str | None = None
    stop_signal: signal.Signals = signal.SIGTERM
    stop_timeout: float = 10.0
    death_signal: signal.Signals = signal.SIGKILL
    signal_group: bool = True


def wrapped_argv(spec: ProcessSpec) -> list[str]:
    """The argv that switches user, arms the parent-death signal and execs the component."""
    uid, gid = -1, -1
    if spec.user:
        entry = pwd.getpwnam(spec.user)
        uid, gid = entry.pw_uid, entry.pw_gid
    return [
        sys.executable,
        "-I",
        "-S",
        "-c",
        _PDEATH_WRAPPER,
        str(int(spec.death_signal)),
        str(os.getpid()),
        str(uid),
        str(gid),
        *spec.argv,
    ]


def spawn(spec: ProcessSpec) -> subprocess.Popen[bytes]:
    """Start a component with its output appended to its log file."""
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    with spec.log_path.open("ab") as out:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        out.write(f"--- {stamp} starting {spec.name}: {' '.join(spec.argv)}\n".encode())
        out.flush()
        return subprocess.Popen(
            wrapped_argv(spec),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=spec.env,
            cwd=spec.cwd,
            start_new_session=True,
            close_fds=True,
        )


def send(proc: subprocess.Popen[bytes], sig: signal.Signals, group: bool) -> None:
    """Signal a child (and its process group when asked); a vanished child is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)


def terminate(proc: subprocess.Popen[bytes], spec: ProcessSpec) -> int | None:
    """Stop a child gracefully, SIGKILL after its timeout; returns its exit status."""
    if proc.returncode is None:
        send(proc, spec.stop_signal, spec.signal_group)
        if not _exited(proc, spec.stop_timeout):
            log.warning("%s did not stop within %.0f s, killing it", spec.name, spec.stop_timeout)
        # Whatever is left in its process group goes too. The child is not reaped yet, so its
        # pid (the group id) cannot have been handed to another process.
        send(proc, signal.SIGKILL, True)
    return proc.wait(5)


def _exited(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait for the child to exit without reaping it (it stays a zombie until proc.wait)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                return True
        except ChildProcessError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def tail(path: Path, lines: int = 20) -> list[str]:
    """The last lines of a text file ([] when it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 256 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    return list(deque(text.splitlines(), maxlen=lines))


def pid_alive(pid: int) -> bool:
    """True when a process with this id exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]
