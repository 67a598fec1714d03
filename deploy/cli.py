"""`ticketing`: run the whole platform on this machine.

    ticketing up [--detach] [--demo-data full|small|none] [--gateway-port 8080] [--port-base 7100]
                 [--ha | --no-ha] [--replicas N] [--search-engine auto|elasticsearch|opensearch]
                 [--jwks-url URL --jwt-issuer ISSUER --jwt-audience AUDIENCE]
    ticketing status | down | logs [component] [-f] [-n N]
    ticketing token --user NAME [--role operator] [--ttl SECONDS] [--audience A]
    ticketing seed [--small] [--reset]

Every command takes ``--state-dir DIR`` (default ``.ticketing/`` in the checkout, or
``$TICKETING_STATE_DIR``); ports chosen at the first ``up`` are stored there.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from deploy.stack import certs, control, gateway, ha, keys, proc, prometheus
from deploy.stack import probes as stack_probes
from deploy.stack.components import build
from deploy.stack.ports import CDC_WORKER, HOST, MAX_REPLICAS, REPLICATED, Ports, instances
from deploy.stack.postgres import Cluster
from deploy.stack.state import (
    StackConfig,
    StateDir,
    default_state_dir,
    load_config,
    read_stack,
    save_config,
)
from deploy.stack.supervisor import StartError, StopRequested, Supervisor, run_seed
from ticketing_common import mesh

log = logging.getLogger("ticketing.cli")
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


# -- up ------------------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace, state: StateDir) -> int:
    config = _config_for_up(args, state)
    try:
        Ports(gateway=config.gateway_port, base=config.port_base)
    except ValueError as exc:
        err_console.print(f"[red]error[/]: {exc}")
        return 2
    running = control.supervisor_pid(state)
    if running is not None:
        err_console.print(
            f"[red]a stack is already running from {state.root} (supervisor pid {running})[/]; "
            f"`ticketing{_state_flag(state)} down` stops it"
        )
        return 1
    try:
        _save_gateway_settings(args, state)
    except ValueError as exc:
        err_console.print(f"[red]error[/]: {exc}")
        return 2
    save_config(state, config)
    if args.detach:
        return _up_detached(args, state, config)
    return _up_foreground(args, state, config)


def _config_for_up(args: argparse.Namespace, state: StateDir) -> StackConfig:
    config = load_config(state)
    if args.gateway_port is not None:
        config.gateway_port = args.gateway_port
    if args.port_base is not None:
        config.port_base = args.port_base
    if args.cors_origin:
        config.cors_origins = list(args.cors_origin)
    if getattr(args, "search_engine", None):
        config.search_engine = args.search_engine
    if getattr(args, "replicas", None) is not None:
        config.replicas = args.replicas
    if getattr(args, "ha", None) is not None:
        config.ha = args.ha
    return config


def _save_gateway_settings(args: argparse.Namespace, state: StateDir) -> None:
    """Store the token issuer the gateway trusts, when given (later `up`s reuse it)."""
    if args.jwks_url is None and args.jwt_issuer is None and args.jwt_audience is None:
        return
    settings = gateway.load_settings(state)
    changes: dict[str, Any] = {}
    if args.jwks_url is not None:
        changes["jwks_url"] = args.jwks_url or None  # "" goes back to the development key
    if args.jwt_issuer is not None:
        changes["issuer"] = args.jwt_issuer
    if args.jwt_audience is not None:
        changes["audiences"] = (args.jwt_audience,)
    if changes.get("jwks_url") is None and "jwks_url" in changes:
        changes.setdefault("issuer", keys.ISSUER)
        changes.setdefault("audiences", (keys.AUDIENCE,))
    settings = settings.with_jwt(**changes)
    if settings.jwt.jwks_url and settings.jwt.issuer == keys.ISSUER:
        raise ValueError("with --jwks-url, name the issuer too (--jwt-issuer)")
    gateway.save_settings(state, settings)


def _up_foreground(args: argparse.Namespace, state: StateDir, config: StackConfig) -> int:
    state.create()
    _setup_logging(to_file=None if args.supervised else state.supervisor_log)
    supervisor = Supervisor(state, config, demo_data=args.demo_data)
    supervisor.install_signal_handlers()
    try:
        supervisor.acquire()
        supervisor.start()
    except (StartError, StopRequested) as exc:
        err_console.print(f"[red]ticketing up failed[/]: {supervisor.error or exc}")
        return 1
    finally:
        if supervisor.phase != "running":
            supervisor.release()
    print_endpoints(state, config)
    if not args.supervised:
        console.print("[dim]Ctrl-C stops the stack.[/]")
    try:
        supervisor.run_until_stopped()
    finally:
        supervisor.release()
    return 0


def _up_detached(args: argparse.Namespace, state: StateDir, config: StackConfig) -> int:
    state.create()
    argv = [
        sys.executable,
        "-m",
        "deploy.cli",
        "--state-dir",
        str(state.root),
        "up",
        "--supervised",
        "--demo-data",
        args.demo_data,
        "--gateway-port",
        str(config.gateway_port),
        "--port-base",
        str(config.port_base),
    ]
    for origin in config.cors_origins:
        argv += ["--cors-origin", origin]
    with state.supervisor_log.open("ab") as out:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            # Not the caller's folder: `-m deploy.cli` must find the installed package, the one
            # this command runs from, not a `deploy/` that happens to be in the current folder.
            cwd=state.root,
        )
    err_console.print(f"starting the stack in the background (supervisor pid {child.pid}) ...")
    try:
        outcome = _wait_detached(state, child)
    except KeyboardInterrupt:
        err_console.print("interrupted: stopping the stack")
        child.send_signal(signal.SIGTERM)
        child.wait()
        return 130
    if outcome == "running":
        print_endpoints(state, config)
        flag = _state_flag(state)
        console.print(f"`ticketing{flag} status` shows it, `ticketing{flag} down` stops it.")
        return 0
    snapshot = read_stack(state) or {}
    reason = snapshot.get("error") or f"the supervisor exited with status {child.returncode}"
    err_console.print(f"[red]ticketing up failed[/]: {reason}")
    err_console.print(f"[dim]supervisor log: {state.supervisor_log}[/]")
    return 1


def _wait_detached(state: StateDir, child: subprocess.Popen[bytes]) -> str:
    """Wait until the detached supervisor is running (or gave up and exited)."""
    while True:
        snapshot = read_stack(state)
        if snapshot and snapshot.get("supervisor_pid") == child.pid:
            if snapshot.get("state") == "running":
                return "running"
        if child.poll() is not None:
            return "failed"
        time.sleep(0.2)


def print_endpoints(state: StateDir, config: StackConfig) -> None:
    ports = config.ports
    gw = config.gateway
    state_flag = _state_flag(state)
    ex = _examples(config)
    table = Table(
        title="ticketing stack is up", caption=f"state in {state.root}", show_header=False
    )
    table.add_column(style="bold")
    table.add_column()
    table.add_row("gateway", f"http://{gw}  (gRPC, gRPC-Web and REST)")
    table.add_row("web client", f"http://{gw}/  (open it in a browser)")
    table.add_row("envoy admin", f"http://{HOST}:{ports.of('envoy-admin')}")
    table.add_row("postgres", config.database_url)
    if config.ha:
        table.add_row(
            "redis",
            f"Sentinels {','.join(config.redis_sentinels)} (master name {ha.MASTER_NAME})",
        )
        table.add_row("etcd", f"http://{HOST}:{ports.of('etcd')}  (Patroni's DCS)")
    else:
        table.add_row("redis", config.redis_url)
    table.add_row("search engine", config.search_url)
    table.add_row("fake stripe", config.stripe_api_base)
    for service in ("catalog", "search", "booking", "queue", "cdc-worker"):
        for name in instances(service, config.replicas):
            table.add_row(
                name,
                f"{HOST}:{ports.of(name)}  (gRPC, mutual TLS; "
                f"metrics http://{HOST}:{ports.of(name + '-metrics')}/metrics)",
            )
    if prometheus.binary() is not None:
        table.add_row("prometheus", f"http://{HOST}:{ports.of('prometheus')}")
    console.print(table)
    console.print(
        "Try:\n"
        f"  grpcurl -plaintext {gw} list\n"
        f"  grpcurl -plaintext {gw} describe ticketing.catalog.v1.CatalogService\n"
        f'  grpcurl -plaintext -d \'{{"service": "ticketing.booking.v1.BookingService"}}\' '
        f"{gw} grpc.health.v1.Health/Check\n"
        f"  curl -s http://{gw}/event/{ex.event_id}\n"
        f"  curl -s 'http://{gw}/search?term={ex.term}'\n"
        f"  TOKEN=$(ticketing{state_flag} token --user alice)\n"
        f'  curl -s -X POST -H "Authorization: Bearer $TOKEN" http://{gw}/booking/reserve '
        f'-d \'{{"ticketId": "{ex.ticket_id}"}}\'\n'
        f'  grpcurl -plaintext -H "authorization: Bearer $TOKEN" '
        f'-d \'{{"ticket_id": "{ex.ticket_id}"}}\' {gw} '
        "ticketing.booking.v1.BookingService/ReserveTicket\n"
        f"  ticketing{state_flag} logs envoy -f\n"
        "A service's port directly (mutual TLS, the development CA's operator certificate; "
        "identity headers count only from the gateway):\n"
        f"  {grpcurl_direct(state, HOST + ':' + str(ports.of('catalog')))} list",
        soft_wrap=True,
    )


def grpcurl_direct(state: StateDir, address: str) -> str:
    """The grpcurl command line that reaches one service's port past the gateway."""
    files = certs.files_of(state, certs.OPERATOR)
    return f"grpcurl -cacert {files.ca} -cert {files.cert} -key {files.key} {address}"


def _state_flag(state: StateDir) -> str:
    """What to add to a `ticketing` command line to reach this state directory."""
    return "" if state.root == default_state_dir().resolve() else f" --state-dir {state.root}"


@dataclass(frozen=True)
class Examples:
    """Real ids from the demo data for the printed examples (placeholders without data)."""

    event_id: str = "<event id>"
    term: str = "jazz"
    ticket_id: str = "<ticket id>"


def _examples(config: StackConfig) -> Examples:
    query = """
        SELECT e.id::text, e.name, t.id::text
        FROM events e LEFT JOIN LATERAL (
            SELECT id FROM tickets WHERE event_id = e.id ORDER BY id LIMIT 1
        ) t ON true
        ORDER BY e.start_time LIMIT 1
    """
    try:
        import psycopg

        with psycopg.connect(config.database_url, connect_timeout=2) as conn:
            row = conn.execute(query).fetchone()
    except Exception:  # the schema or the data may not be there: keep the placeholders
        return Examples()
    if not row:
        return Examples()
    words = [word.lower() for word in str(row[1]).split() if word.isalpha()]
    return Examples(
        event_id=row[0], term=words[0] if words else "jazz", ticket_id=row[2] or "<ticket id>"
    )


# -- status / down -------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace, state: StateDir) -> int:
    config = load_config(state)
    snapshot = read_stack(state) or {}
    pid = control.supervisor_pid(state)
    running = pid is not None and snapshot.get("state") == "running"
    probes = _probes(state, config) if snapshot.get("components") else {}
    if getattr(args, "json", False):
        roles = _roles(config, state, snapshot) if pid is not None else {}
        return _status_json(snapshot, probes, pid, running, roles)
    roles = _roles(config, state, snapshot) if pid is not None else {}
    table = Table(title=_status_title(snapshot, pid), caption=f"state in {state.root}")
    for column in ("component", "status", "pid", "port", "role", "healthy", "why"):
        table.add_column(column)
    healthy_all = running
    for item in snapshot.get("components", []):
        healthy, why = _component_health(item, probes, pid is not None)
        healthy_all &= healthy
        table.add_row(
            item["name"],
            item.get("status", "?") if pid else "not running",
            str(item.get("pid") or "-") if pid else "-",
            _ports_cell(item),
            roles.get(item["name"], ""),
            "[green]yes[/]" if healthy else "[red]no[/]",
            why or "",
        )
    console.print(table)
    names = {item["name"] for item in snapshot.get("components", [])}
    if "prometheus" in names:
        console.print(
            f"metrics: Prometheus on http://{HOST}:{config.ports.of('prometheus')} scrapes every "
            "process's /metrics and Envoy's /stats/prometheus"
        )
    elif snapshot:
        console.print(
            "metrics: every process serves /metrics; no Prometheus "
            "server runs (Debian's prometheus package is not installed)"
        )
    if not snapshot:
        console.print(f"no stack has run from {state.root}; `ticketing up` starts one")
    return 0 if healthy_all else 1


def _status_json(
    snapshot: dict[str, Any],
    probes: dict[str, Callable[[], str | None]],
    pid: int | None,
    running: bool,
    roles: dict[str, str],
) -> int:
    """``ticketing status --json``: the table's facts, for scripts."""
    rows = []
    healthy_all = running
    for item in snapshot.get("components", []):
        healthy, why = _component_health(item, probes, pid is not None)
        healthy_all &= healthy
        name = str(item["name"])
        service, _, number = name.rpartition("-")
        replicated = service in REPLICATED or service == CDC_WORKER
        instance = int(number) if replicated and number.isdigit() else 1
        rows.append(
            {
                "component": service if instance > 1 else name,
                "instance": instance,
                "name": name,
                "status": item.get("status", "?") if pid else "not running",
                "pid": item.get("pid") if pid else None,
                "port": item.get("port"),
                "ports": item.get("ports", {}),
                "role": roles.get(name),
                "healthy": healthy,
                "why": why or None,
            }
        )
    state = snapshot.get("state", "not running") if pid else "not running"
    print(json.dumps({"state": state, "supervisor_pid": pid, "components": rows}, indent=2))
    return 0 if healthy_all else 1


def _roles(config: StackConfig, state: StateDir, snapshot: dict[str, Any]) -> dict[str, str]:
    """The data tier's nodes and their current roles (under --ha: primary / replica /
    sentinel for Redis, leader / sync standby / replica for Postgres; else primary), and the
    CDC workers' (active: holds the slot's lock and streams; else standby)."""
    names = [str(item["name"]) for item in snapshot.get("components", [])]
    if snapshot.get("ha", config.ha):
        roles = ha.node_roles(config.ports, names)
    else:
        roles = {name: "primary" for name in ("postgres", "redis") if name in names}
    return roles | _cdc_roles(config, state, names)


def _cdc_roles(config: StackConfig, state: StateDir, names: list[str]) -> dict[str, str]:
    """Which CDC worker is active: the one whose ``mesh.CDC_ACTIVE_HEALTH`` is SERVING (it
    holds the slot's advisory lock and streams); the others stand by."""
    roles = {}
    for name in instances(CDC_WORKER, MAX_REPLICAS):
        if name in names:
            probe = stack_probes.grpc_health(
                f"{HOST}:{config.ports.of(name)}",
                mesh.CDC_ACTIVE_HEALTH,
                tls=certs.files_of(state, certs.STACK),
            )
            roles[name] = "active" if probe() is None else "standby"
    return roles


def _replicas(value: str) -> int:
    count = int(value) if value.isdigit() else 0
    if not 1 <= count <= MAX_REPLICAS:
        raise argparse.ArgumentTypeError(f"--replicas takes 1 to {MAX_REPLICAS} (got {value!r})")
    return count


def _ports_cell(item: dict[str, Any]) -> str:
    """The component's port, and its metrics port."""
    cell = str(item.get("port"))
    metrics = (item.get("ports") or {}).get(f"{item['name']}-metrics")
    return f"{cell} (metrics {metrics})" if metrics else cell


def _noop() -> None:
    return None


def _probes(state: StateDir, config: StackConfig) -> dict[str, Callable[[], str | None]]:
    cluster = Cluster(state, config.ports.of("postgres"))
    return {c.name: c.probe for c in build(config, state, cluster, _noop, _noop)}


def _status_title(snapshot: dict[str, Any], pid: int | None) -> str:
    if pid is None:
        return "ticketing stack: not running"
    return f"ticketing stack: {snapshot.get('state', '?')} (supervisor pid {pid})"


def _component_health(
    item: dict[str, Any], probes: dict[str, Any], supervised: bool
) -> tuple[bool, str | None]:
    if not supervised:
        return False, "the stack is not running"
    pid = item.get("pid")
    if not pid or not proc.pid_alive(int(pid)):
        return False, item.get("detail") or "no process"
    probe = probes.get(item["name"])
    why = probe() if probe else "unknown component"
    return why is None, why


def cmd_down(args: argparse.Namespace, state: StateDir) -> int:
    snapshot = read_stack(state) or {}
    pid = control.supervisor_pid(state)
    if pid is None:
        console.print(f"no stack is running from {state.root}")
    else:
        console.print(f"stopping the stack (supervisor pid {pid}) ...")
        if not control.stop_supervisor(pid):
            err_console.print(f"the supervisor did not stop in time and was killed (pid {pid})")
    for name in control.kill_leftovers(snapshot):
        err_console.print(f"killed a leftover {name}")
    if snapshot.get("ha"):
        for node in ha.POSTGRES_NODES:
            ha.fence(state, node)
    busy = control.wait_ports_free(snapshot)
    if busy:
        err_console.print("[red]still listening after down:[/] " + ", ".join(busy))
        return 1
    if pid is not None:
        console.print("stack stopped; every port is free")
    return 0


# -- logs / token / seed -------------------------------------------------------------------


def cmd_logs(args: argparse.Namespace, state: StateDir) -> int:
    files = _log_files(state, args.component)
    if not files:
        known = ", ".join(sorted(path.stem for path in state.logs.glob("*.log"))) or "none yet"
        wanted = f" for {args.component}" if args.component else ""
        err_console.print(f"no log{wanted} in {state.logs} (logs there: {known})")
        return 1
    for name, path in files.items():
        if len(files) > 1:
            console.print(f"[bold]==> {name} <==[/]")
        for line in proc.tail(path, args.lines):
            console.print(line, markup=False, soft_wrap=True)
    if args.follow:
        _follow(files)
    return 0


def _log_files(state: StateDir, component: str | None) -> dict[str, Path]:
    if component:
        path = state.log_of(component)
        return {component: path} if path.exists() else {}
    snapshot = read_stack(state) or {}
    order = ["supervisor", *(item["name"] for item in snapshot.get("components", []))]
    found = {name: state.log_of(name) for name in order if state.log_of(name).exists()}
    for path in sorted(state.logs.glob("*.log")):
        found.setdefault(path.stem, path)
    return found


def _follow(files: dict[str, Path]) -> None:
    offsets = {name: path.stat().st_size for name, path in files.items()}
    prefix = len(files) > 1
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            for name, path in files.items():
                with path.open("rb") as handle:
                    size = handle.seek(0, os.SEEK_END)
                    if size < offsets[name]:
                        offsets[name] = 0
                    handle.seek(offsets[name])
                    chunk = handle.read()
                    offsets[name] += len(chunk)
                for line in chunk.decode(errors="replace").splitlines():
                    console.print(
                        f"[{name}] {line}" if prefix else line, markup=False, soft_wrap=True
                    )
            time.sleep(0.3)


def cmd_token(args: argparse.Namespace, state: StateDir) -> int:
    token = keys.mint_token(state, args.user, role=args.role, ttl=args.ttl, audience=args.audience)
    sys.stdout.write(token + "\n")
    return 0


def cmd_seed(args: argparse.Namespace, state: StateDir) -> int:
    config = load_config(state)
    if control.supervisor_pid(state) is None:
        err_console.print(f"[red]no stack is running from {state.root}[/]; `ticketing up` first")
        return 1
    _setup_logging(to_file=None)
    run_seed(config.database_url, small=args.small, reset=args.reset)
    return 0


# -- wiring --------------------------------------------------------------------------------


def _setup_logging(to_file: Path | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if to_file is not None:
        to_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(to_file))
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, handlers=handlers, force=True)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="ticketing", description="Run the ticketing platform locally."
    )
    root.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where the stack keeps its data, logs and keys "
        "(default: $TICKETING_STATE_DIR or .ticketing/ in the checkout)",
    )
    sub = root.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the stack (foreground unless --detach)")
    up.add_argument(
        "--detach", action="store_true", help="run in the background; return when ready"
    )
    up.add_argument(
        "--demo-data",
        choices=["full", "small", "none"],
        default="full",
        help="what to seed into a fresh database (default: full)",
    )
    up.add_argument("--gateway-port", type=int, default=None, help="default 8080, then as stored")
    up.add_argument("--port-base", type=int, default=None, help="default 7100, then as stored")
    up.add_argument(
        "--replicas",
        type=_replicas,
        default=None,
        help=f"instances of each public service, 1-{MAX_REPLICAS} (default 1, then as stored)",
    )
    up.add_argument(
        "--ha",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the high-availability data tier: Postgres as a Patroni cluster (two nodes, a "
        "synchronous standby, on etcd) and Redis under Sentinel (a primary, a replica, three "
        "Sentinels); --no-ha goes back to one of each (default: off, then as stored)",
    )
    up.add_argument(
        "--search-engine",
        choices=["auto", "elasticsearch", "opensearch"],
        default=None,
        help="the search engine's client (default auto: ask the engine; then as stored)",
    )
    up.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        help="an origin browsers may call the gateway from (repeatable)",
    )
    up.add_argument(
        "--jwks-url",
        default=None,
        help="production: the token issuer's JWKS URL (default: the stack's development key; "
        "'' goes back to it)",
    )
    up.add_argument("--jwt-issuer", default=None, help="production: the tokens' iss claim")
    up.add_argument(
        "--jwt-audience", default=None, help=f"the tokens' aud claim (default {keys.AUDIENCE})"
    )
    up.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)
    up.set_defaults(func=cmd_up)

    status = sub.add_parser("status", help="show every component's state")
    status.add_argument("--json", action="store_true", help="print it as JSON, for scripts")
    status.set_defaults(func=cmd_status)
    sub.add_parser("down", help="stop a detached stack").set_defaults(func=cmd_down)

    logs = sub.add_parser("logs", help="show the components' logs")
    logs.add_argument("component", nargs="?", help="e.g. postgres, booking, envoy, supervisor")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("-n", "--lines", type=int, default=20)
    logs.set_defaults(func=cmd_logs)

    token = sub.add_parser("token", help="print a development JWT for the gateway")
    token.add_argument("--user", required=True)
    token.add_argument("--role", default=keys.DEFAULT_ROLE)
    token.add_argument("--ttl", type=int, default=keys.DEFAULT_TTL_SECONDS, help="seconds")
    token.add_argument("--audience", default=keys.AUDIENCE)
    token.set_defaults(func=cmd_token)

    seed = sub.add_parser("seed", help="load demo data into the running stack's database")
    seed.add_argument("--small", action="store_true")
    seed.add_argument("--reset", action="store_true", help="delete the existing data first")
    seed.set_defaults(func=cmd_seed)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    state = StateDir((args.state_dir or default_state_dir()).resolve())
    return int(args.func(args, state))


if __name__ == "__main__":
    sys.exit(main())
