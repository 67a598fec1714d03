import datetime as dt

import pytest

from ticketing_common import admission
from ticketing_common.errors import PermissionDenied

KEY = "k" * 64


def in_minutes(minutes: float) -> dt.datetime:
    """A time relative to when the test runs (never to when the module was imported)."""
    return dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)


def test_a_token_admits_its_user_to_its_event():
    soon = in_minutes(10)
    token = admission.sign(KEY, user_id="alice", event_id="e1", expire_time=soon)
    assert admission.verify(KEY, token, user_id="alice", event_id="e1") == soon.replace(
        microsecond=0
    )


@pytest.mark.parametrize(
    ("token_for", "presented_by", "key", "expires_in"),
    [
        (("alice", "e1"), ("bob", "e1"), KEY, 10),  # another user's admission
        (("alice", "e2"), ("alice", "e1"), KEY, 10),  # another event's admission
        (("alice", "e1"), ("alice", "e1"), "x" * 64, 10),  # forged with another key
        (("alice", "e1"), ("alice", "e1"), KEY, -1),  # expired a minute ago
    ],
)
def test_refused_admissions_say_not_admitted(token_for, presented_by, key, expires_in):
    expires = in_minutes(expires_in)
    token = admission.sign(key, user_id=token_for[0], event_id=token_for[1], expire_time=expires)
    with pytest.raises(PermissionDenied) as err:
        admission.verify(KEY, token, user_id=presented_by[0], event_id=presented_by[1])
    assert err.value.reason == "NOT_ADMITTED"


def test_no_token_is_refused():
    with pytest.raises(PermissionDenied) as err:
        admission.verify(KEY, "", user_id="alice", event_id="e1")
    assert err.value.reason == "NOT_ADMITTED"
