"""The cap on label values (ticketing_common.metrics.BoundedLabel): a process that sees more
events than the cap keeps a bounded number of series, the overflow counted as ``other``."""

from booking_svc.metrics import UNKNOWN_EVENT, event_label
from ticketing_common.metrics import BoundedLabel


def test_past_the_cap_a_new_value_is_counted_as_other_and_the_first_ones_keep_theirs():
    label = BoundedLabel(cap=3)
    assert [label(f"event-{i}") for i in range(4)] == [
        "event-0",
        "event-1",
        "event-2",
        BoundedLabel.OTHER,
    ]
    # The events labelled first keep their own series; any other new one joins "other".
    assert label("event-1") == "event-1"
    assert label("event-9") == BoundedLabel.OTHER
    assert label("event-3") == BoundedLabel.OTHER


def test_booking_labels_an_unknown_event_without_spending_the_cap():
    assert event_label(None) == UNKNOWN_EVENT
    assert event_label("") == UNKNOWN_EVENT
