"""The browser tier's fixture: the shared stack, once Chromium and the built client are there."""

from __future__ import annotations

import pytest

from tests.e2e.driver import check_browser


@pytest.fixture(scope="module")
def browser(stack):
    """The shared stack, checked to have what the journeys need."""
    return check_browser(stack)
