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
        assert clock.stored_text(value) == value.isoformat(" ")  # from wire()'s text


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


@given(st.lists(st.integers(min_value=0, max_value=4_102_444_800_000_000), min_size=1, max_size=6))
def test_now_and_its_texts_are_those_of_the_clock_as_it_was(micros):
    """now() builds its datetime from the second's fields, and its stored text and Unix
    seconds from the second's: each is what the timedelta sum, isoformat and the
    division give (whole seconds, the same second again, and any order of seconds)."""
    for us in [*micros, micros[0], micros[0] - micros[0] % 1_000_000]:
        expected = datetime(1970, 1, 1) + timedelta(microseconds=us)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(clock.time, "time_ns", lambda us=us: us * 1000 + 999)
            value = clock.now()
        assert value == expected and value.tzinfo is None
        assert clock.stored_text(value) == expected.isoformat(" ")
        assert clock.wire(value) == expected.isoformat(" ", "seconds")
        assert clock.unix(value) == us // 1_000_000
        assert clock.wire_and_unix(value) == (clock.wire(value), clock.unix(value))
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(clock.time, "time_ns", lambda us=us: us * 1000 + 999)
            stamped, text = clock.now_stored()
        assert stamped == expected and stamped.tzinfo is None
        assert text == expected.isoformat(" ") == clock.stored_text(stamped)
        assert clock.wire_and_unix(stamped) == (clock.wire(value), us // 1_000_000)


def test_wire_and_unix_of_a_datetime_now_did_not_make():
    for value in (datetime(2026, 12, 5, 9, 0, 1, 7), datetime(2026, 12, 5, 9, 0, 2)):
        assert clock.wire_and_unix(value) == (value.isoformat(" ", "seconds"), clock.unix(value))
        clock.stored_text(value)  # its wire text kept, without its Unix seconds
        assert clock.wire_and_unix(value) == (clock.wire(value), clock.unix(value))
