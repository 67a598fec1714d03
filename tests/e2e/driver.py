"""Runs the browser journeys of tests/e2e/browser.mjs (headless Debian Chromium driven by
playwright-core) against a stack's gateway, for the browser test modules."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DRIVER = ROOT / "tests" / "e2e" / "browser.mjs"
CHROMIUM = Path("/usr/bin/chromium")
ON_SALE = "03a67087-67cc-5c61-b94c-c5f5e083f9f7"  # Ember & Ash, on sale, no queue
HOT_SALE = "3038521a-4098-53b8-a8fa-76a0ca81e121"  # Aurora Vale, queue, opens tomorrow
PNG = b"\x89PNG\r\n\x1a\n"


def check_browser(stack):
    """Checks that what the journeys need is there (`make test` installs all of it)."""
    missing = [
        what
        for what, present in (
            ("Debian's chromium (make browser)", CHROMIUM.exists()),
            ("node", shutil.which("node") is not None),
            ("playwright-core (npm ci)", (ROOT / "node_modules" / "playwright-core").is_dir()),
            ("the built web client (make web)", (ROOT / "web" / "dist" / "index.html").exists()),
        )
        if not present
    ]
    if missing:
        pytest.fail("the browser tests need: " + ", ".join(missing), pytrace=False)
    return stack


def journey(stack, name: str, out: Path, expected_errors: tuple[str, ...] = (), **params) -> dict:
    """Run one journey in a fresh headless Chromium; what it saw, or the failure's details.
    ``expected_errors``: console errors the journey provokes on purpose (by substring)."""
    argv = ["node", str(DRIVER), name, "--gateway", stack.gateway, "--out", str(out)]
    done = subprocess.run(
        [*argv, "--params", json.dumps(params)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        pytest.fail(f"{name}: no result (exit {done.returncode})\n{done.stdout}\n{done.stderr}")
    seen = json.loads(lines[-1])
    if not seen["ok"]:
        pytest.fail(
            f"{name} failed: {seen['error']}\nscreenshot: {seen['screenshot']}\n"
            f"page text:\n{seen['body'][:2000]}\nconsole errors: {seen['console_errors']}",
            pytrace=False,
        )
    unexpected = [
        e for e in seen["console_errors"] if not any(part in e for part in expected_errors)
    ]
    assert unexpected == [], seen["console_errors"]
    return seen
