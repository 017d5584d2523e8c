"""kefu/clock.py: the wire text of a datetime, whether or not ``stored_text`` has
formatted it first, is always the guide's "YYYY-MM-DD HH:MM:SS"."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kefu import clock

pytestmark = pytest.mark.ignores_test_database

naive = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31))


@given(st.lists(naive, min_size=1, max_size=6), st.lists(st.booleans(), min_size=6, max_size=6))
def test_wire_text_is_the_seconds_of_every_datetime_in_any_order(values, stored_first):
    for value, store in zip(values, stored_first, strict=False):
        if store:
            # The text SQLite's own adapter stores (sqlite3's adapter is isoformat(" ")).
            assert clock.stored_text(value) == value.isoformat(" ")
        assert clock.wire(value) == value.isoformat(" ", "seconds")
    for value in reversed(values):  # formatted before, by another call
        assert clock.wire(value) == value.isoformat(" ", "seconds")


def test_whole_seconds_and_aware_datetimes_and_none():
    whole = datetime(2026, 12, 5, 9, 0, 0)
    assert clock.stored_text(whole) == "2026-12-05 09:00:00"
    assert clock.wire(whole) == "2026-12-05 09:00:00"
    aware = datetime(2026, 12, 5, 9, 0, 0, 5, tzinfo=UTC)
    assert clock.stored_text(aware) == "2026-12-05 09:00:00.000005+00:00"
    assert clock.wire(aware) == "2026-12-05 09:00:00+00:00"
    assert clock.wire(None) is None
    # The same instant in another zone is equal, but not the same text.
    later_zone = aware.astimezone(timezone(timedelta(hours=1)))
    assert later_zone == aware
    assert clock.wire(later_zone) == "2026-12-05 10:00:00+01:00"
