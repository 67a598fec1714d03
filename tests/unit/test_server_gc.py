"""A serving process's garbage collector (``ticketing_common.server.tune_gc``): a server with
many open calls that broadcasts to all of them runs no full collection, each of which would
stop every call for as long as it takes to walk them all (0.4-0.9 s with 10,000 watchers,
bench/watch_fanout.py). The control: CPython's defaults run one at almost every broadcast."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A fresh interpreter: the thresholds and the frozen generation are the whole process's.
# 30,000 open calls (two objects each, made after start-up as streams are), then 40 broadcasts,
# each putting one write in flight per call until the broadcast is over.
PROBE = """
import gc, json, sys
from ticketing_common.server import tune_gc

if sys.argv[1] == "tuned":
    tune_gc()
full = []
gc.callbacks.append(
    lambda phase, info: full.append(1) if phase == "stop" and info["generation"] == 2 else None
)
calls = [[{"watcher": i}, [i]] for i in range(30_000)]
opened = len(full)
for _ in range(40):
    in_flight = [({"data": b""}, [i]) for i in range(len(calls))]
    del in_flight
print(json.dumps({"opening": opened, "broadcasts": len(full) - opened,
                  "frozen": gc.get_freeze_count(), "threshold": gc.get_threshold()}))
"""


def probe(mode: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_broadcasting_to_many_open_calls_runs_no_full_collection():
    tuned = probe("tuned")
    assert tuned["broadcasts"] == 0
    assert tuned["opening"] == 0
    # What start-up made is out of the collector's sight.
    assert isinstance(tuned["frozen"], int) and tuned["frozen"] > 10_000


def test_control_cpython_defaults_run_full_collections_while_broadcasting():
    default = probe("default")
    assert default["threshold"] == [700, 10, 10]
    assert isinstance(default["broadcasts"], int) and default["broadcasts"] >= 10
