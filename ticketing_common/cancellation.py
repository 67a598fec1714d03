"""Cancellation that holds on Python 3.11.

Python 3.11's ``asyncio.wait_for`` returns the awaited result instead of raising when the
cancellation arrives in the same turn as that result (CPython gh-86296, fixed in 3.12 by
rebuilding ``wait_for`` on ``asyncio.timeout``), and redis-py wraps the send of every command
in ``wait_for``. A cancelled task can therefore come back from a Redis call as if nothing had
happened: the request is only remembered in ``Task.cancelling()``. A loop that waits for
``CancelledError`` alone then runs on, and whoever awaits it (a stopping process, a test) hangs.

Every long-running loop calls ``checkpoint()`` once per round, so a swallowed cancellation ends
it at the next round; ``ServiceServer`` also repeats its cancel while it waits for its jobs.
"""

from __future__ import annotations

import asyncio


def checkpoint() -> None:
    """Raise ``CancelledError`` if the current task was asked to stop and has not yet."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
