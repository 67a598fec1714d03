"""The supervisor: starts the stack in order, keeps it running, stops it in reverse.

One supervisor owns one state directory (``run/supervisor.lock``). It starts each component only
after the previous one is healthy, restarts any that dies (with backoff), publishes what it runs
in ``run/stack.json`` and, on SIGINT/SIGTERM/SIGHUP, stops everything in reverse order and checks
that no port is left listening.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any, Literal

from . import certs, gateway, ha, keys, postgres
from .components import Component, build
from .ports import HOST, PortInUseError, ensure_port_free, is_port_free
from .postgres import Cluster
from .proc import ProcessSpec, spawn, tail, terminate
from .state import StackConfig, StateDir, write_json_atomic

log = logging.getLogger("ticketing.stack")

DemoData = Literal["full", "small", "none"]
BACKOFF_START = 1.0
BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0
TICK = 0.5
LOG_TAIL_LINES = 15


class StopRequested(BaseException):
    """A signal asked the supervisor to stop while it was starting the stack.

    A BaseException (like KeyboardInterrupt), so that no ``except Exception`` on the way (in a
    migration or the seed) swallows it.
    """


class StartError(RuntimeError):
    """One step of the start failed; the message names the component and why."""

    def __init__(self, component: str, reason: str, log_lines: list[str] | None = None) -> None:
        text = f"{component}: {reason}"
        if log_lines:
            text += "\n--- last lines of its log ---\n" + "\n".join(log_lines)
        super().__init__(text)
        self.component = component
        self.reason = reason


@dataclass
class Running:
    """The supervisor's record of one component."""

    component: Component
    status: str = "pending"
    spec: ProcessSpec | None = None
    proc: subprocess.Popen[bytes] | None = None
    detail: str | None = None
    restarts: int = 0
    exit_code: int | None = None
    started_at: float = 0.0
    next_start: float = 0.0
    backoff: float = BACKOFF_START

    @property
    def name(self) -> str:
        return self.component.name

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.proc.pid if self.proc and self.proc.poll() is None else None,
            "port": self.component.port,
            "ports": self.component.ports(),
            "status": self.status,
            "detail": self.detail,
            "restarts": self.restarts,
            "exit_code": self.exit_code,
            "executable": self.spec.argv[0] if self.spec else None,
        }


@dataclass
class Supervisor:
    state: StateDir
    config: StackConfig
    demo_data: DemoData = "small"
    phase: str = "idle"
    error: str | None = None
    runs: list[Running] = field(default_factory=list)
    _stop: bool = False
    _lock_fd: int | None = None
    _started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.cluster = Cluster(self.state, self.config.ports.of("postgres"))
        components = build(
            self.config, self.state, self.cluster, self._prepare_postgres, self._prepare_gateway
        )
        self.runs = [Running(component) for component in components]

    # -- lifecycle -----------------------------------------------------------------------

    def acquire(self) -> None:
        """Own the state directory; fails when another supervisor runs on it."""
        self.state.create()
        fd = os.open(self.state.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode().strip() or "?"
            os.close(fd)
            raise StartError(
                "supervisor",
                f"a stack is already running from {self.state.root} (supervisor pid {holder}); "
                "use `ticketing status` or `ticketing down`",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.phase == "starting":
            log.warning("%s received while starting: stopping", name)
            self.phase = "aborting"
            raise StopRequested(name)
        if not self._stop:
            log.info("%s received: stopping the stack", name)
        self._stop = True

    def start(self) -> None:
        """Start every component in order; on failure stop what was started and re-raise."""
        self.phase = "starting"
        self._publish()
        try:
            keys.ensure_keys(self.state)
            certs.ensure_certs(self.state)
            if self.config.ha:
                ha.reset_sentinels(self.state)
            for run in self.runs:
                self._start_first(run)
                if run.name == "postgres":
                    self._after_postgres()
        except (Exception, StopRequested) as exc:
            self.error = str(exc) if not isinstance(exc, StopRequested) else f"stopped by {exc}"
            self.phase = "failed"
            log.error("start failed: %s", self.error)
            self._publish()
            self.stop_all(final_phase="failed")
            raise
        self.phase = "running"
        log.info("stack ready in %.1f s", time.monotonic() - self._started)
        self._publish()

    def run_until_stopped(self) -> None:
        """Watch the components until a signal asks to stop, then stop them all."""
        while not self._stop:
            changed = False
            for run in self.runs:
                changed |= self._tick(run)
            if changed:
                self._publish()
            time.sleep(TICK)
        self.stop_all()

    def stop_all(self, final_phase: str = "stopped") -> None:
        """Stop every started component in reverse order, then check their ports are free."""
        self.phase = "stopping"
        self._publish()
        for run in reversed(self.runs):
            if run.proc is None or run.spec is None:
                continue
            log.info("stopping %s (pid %d)", run.name, run.proc.pid)
            run.exit_code = terminate(run.proc, run.spec)
            if run.component.on_exit:
                run.component.on_exit()
            run.status = "stopped"
            run.proc = None
            self._publish()
        self._check_ports_released()
        self.phase = final_phase
        self._publish()
        log.info("stack %s", final_phase)

    # -- starting ------------------------------------------------------------------------

    def _start_first(self, run: Running) -> None:
        """First start of a component: its ports must be free and it must become healthy."""
        began = time.monotonic()
        for name, port in run.component.ports().items():
            try:
                ensure_port_free(name, port)
            except PortInUseError as exc:
                run.status, run.detail = "failed", exc.reason
                raise StartError(run.name, exc.reason) from None
        try:
            self._spawn(run)
        except (OSError, RuntimeError) as exc:
            run.status, run.detail = "failed", str(exc)
            raise StartError(run.name, str(exc), tail(self.state.log_of(run.name))) from exc
        self._publish()
        self._wait_ready(run)
        run.status, run.detail = "running", None
        run.started_at = time.monotonic()
        log.info(
            "%s ready on %s:%d (%.1f s)",
            run.name,
            HOST,
            run.component.port,
            time.monotonic() - began,
        )
        self._publish()

    def _spawn(self, run: Running) -> None:
        if run.component.prepare:
            run.component.prepare()
        run.spec = run.component.spec()
        run.proc = spawn(run.spec)
        run.status, run.detail, run.exit_code = "starting", None, None
        log.info("started %s (pid %d)", run.name, run.proc.pid)

    def _wait_ready(self, run: Running) -> None:
        assert run.proc is not None
        deadline = time.monotonic() + run.component.ready_timeout
        why: str | None = "not probed yet"
        while True:
            code = run.proc.poll()
            if code is not None:
                run.status, run.exit_code = "failed", code
                run.detail = f"{describe_exit(code)} while starting"
                raise StartError(
                    run.name, run.detail, tail(self.state.log_of(run.name), LOG_TAIL_LINES)
                )
            why = run.component.probe()
            if why is None:
                return
            run.detail = why
            if time.monotonic() > deadline:
                run.status = "failed"
                reason = f"not healthy after {run.component.ready_timeout:.0f} s: {why}"
                raise StartError(
                    run.name, reason, tail(self.state.log_of(run.name), LOG_TAIL_LINES)
                )
            time.sleep(0.2)

    def _prepare_postgres(self) -> None:
        postgres.prepare(self.cluster, self.state.log_of("postgres"))

    def _prepare_gateway(self) -> None:
        rendered = gateway.write(self.config, self.state, keys.jwks_path(self.state))
        gateway.validate(rendered.path)

    def _after_postgres(self) -> None:
        """Create the database, apply migrations, seed a fresh database."""
        ports = self.config.ports
        admin = ha.admin_url(ports) if self.config.ha else self.cluster.admin_dsn()
        try:
            fresh = postgres.ensure_database(admin)
        except Exception as exc:
            raise StartError("postgres", f"cannot create the database: {exc}") from exc
        self._migrate()
        self._seed(fresh)

    def _migrate(self) -> None:
        from deploy.migrate import apply_migrations

        began = time.monotonic()
        try:
            # yoyo reads one host only: under --ha, the current primary's.
            url = ha.leader_url(self.config.ports) if self.config.ha else self.config.database_url
            apply_migrations(url)
        except Exception as exc:
            raise StartError("migrations", f"{type(exc).__name__}: {exc}") from exc
        log.info("migrations applied (%.1f s)", time.monotonic() - began)

    def _seed(self, fresh: bool) -> None:
        marker = self.state.root / "seed.json"
        interrupted = marker.exists() and '"started"' in marker.read_text()
        if self.demo_data == "none":
            return
        if not fresh and not interrupted:
            log.info("demo data: the database already exists; not seeding (see `ticketing seed`)")
            return
        began = time.monotonic()
        write_json_atomic(marker, {"kind": self.demo_data, "status": "started"})
        try:
            # The seed is idempotent: after an interrupted run it loads only what is missing.
            run_seed(self.config.database_url, small=self.demo_data == "small")
        except Exception as exc:
            raise StartError("demo-data", f"{type(exc).__name__}: {exc}") from exc
        write_json_atomic(marker, {"kind": self.demo_data, "status": "done"})
        log.info("demo data (%s) seeded (%.1f s)", self.demo_data, time.monotonic() - began)

    # -- watching ------------------------------------------------------------------------

    def _tick(self, run: Running) -> bool:
        """Restart what died, notice what came back; True when something changed."""
        now = time.monotonic()
        if run.proc is not None and run.status in ("running", "starting"):
            code = run.proc.poll()
            if code is None:
                return self._settle(run)
            self._schedule_restart(run, code, now)
            return True
        if run.status == "restarting" and now >= run.next_start:
            try:
                self._spawn(run)
            except Exception as exc:
                log.error("%s: restart failed: %s", run.name, exc)
                self._schedule_restart(run, None, now)
            return True
        return False

    def _settle(self, run: Running) -> bool:
        if run.status != "starting":
            return False
        why = run.component.probe()
        if why is not None:
            run.detail = why
            return False
        run.status, run.detail = "running", None
        run.started_at = time.monotonic()
        log.info("%s is back (pid %d)", run.name, run.proc.pid if run.proc else -1)
        return True

    def _schedule_restart(self, run: Running, code: int | None, now: float) -> None:
        if run.status == "running" and now - run.started_at > STABLE_AFTER:
            run.backoff = BACKOFF_START
        if run.component.on_exit:
            run.component.on_exit()
        run.exit_code = code
        run.proc = None
        run.restarts += 1
        run.status = "restarting"
        delay = max(run.backoff, run.component.restart_delay)
        run.next_start = now + delay
        run.detail = f"{describe_exit(code)}; restart #{run.restarts} in {delay:.0f} s"
        lines = "\n".join(tail(self.state.log_of(run.name), 5))
        log.error("%s %s\n%s", run.name, run.detail, lines)
        run.backoff = min(run.backoff * 2, BACKOFF_MAX)

    # -- reporting -----------------------------------------------------------------------

    def _check_ports_released(self) -> None:
        deadline = time.monotonic() + 5.0
        busy = self._busy_ports()
        while busy and time.monotonic() < deadline:
            time.sleep(0.1)
            busy = self._busy_ports()
        for name, port in busy.items():
            log.error("%s: port %d is still in use after stop", name, port)

    def _busy_ports(self) -> dict[str, int]:
        busy: dict[str, int] = {}
        for run in self.runs:
            if run.spec is None:
                continue
            busy |= {n: p for n, p in run.component.ports().items() if not is_port_free(p)}
        return busy

    def snapshot(self) -> dict[str, Any]:
        return {
            "supervisor_pid": os.getpid(),
            "state": self.phase,
            "error": self.error,
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "state_dir": str(self.state.root),
            "gateway": self.config.gateway,
            "database_url": self.config.database_url,
            "ha": self.config.ha,
            "components": [run.as_json() for run in self.runs],
        }

    def _publish(self) -> None:
        with contextlib.suppress(OSError):
            write_json_atomic(self.state.stack_file, self.snapshot())


def run_seed(database_url: str, small: bool, reset: bool = False) -> None:
    """deploy.demo_data.seed, imported only when needed (it carries the whole data set)."""
    from deploy.demo_data import seed

    seed(database_url, small=small, reset=reset, progress=True)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "could not be started"
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"
