"""Outgoing frames' text (kefu/protocols.compact_json) against the standard library's.

orjson writes the frames; the standard library's compact encoder is the oracle, and
what orjson refuses must fall back to it.
"""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kefu.protocols import _stdlib_json, compact_json

pytestmark = pytest.mark.ignores_test_database

# What frames hold: objects with string keys, lists, strings, integers (a client's
# op_id may exceed 64 bits), booleans and null. No codec puts a float in a frame.
scalars = st.none() | st.booleans() | st.integers() | st.text()
frames = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(frames)
def test_frames_read_exactly_as_the_standard_library_writes_them(value):
    assert compact_json(value) == _stdlib_json(value)


def test_what_orjson_refuses_falls_back_to_the_standard_library():
    huge_op_id = {"success": True, "op_id": 10**30}
    assert compact_json(huge_op_id) == '{"success":true,"op_id":1000000000000000000000000000000}'
    lone_surrogate = {"content": "\ud800"}
    assert compact_json(lone_surrogate) == _stdlib_json(lone_surrogate)
    int_keys = {1: "one"}
    assert compact_json(int_keys) == '{"1":"one"}'


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_float_would_keep_its_value(number):
    # Written differently ("1e-7", not "1e-07"), but read back the same.
    assert json.loads(compact_json({"x": number})) == {"x": number}


def _read(loads, text):
    """What ``loads`` makes of ``text``: its value, or its error's type and message."""
    try:
        return "value", loads(text)
    except (ValueError, RecursionError) as exc:
        return type(exc).__name__, str(exc)


# Incoming frames: kefu.protocols.fields reads them with the standard library's scanner
# directly, and must read every text (around it whitespace, a BOM, extra data, nothing)
# as json.loads does, value or error.
around = st.sampled_from(["", " ", "\n\t ", "\ufeff", "x", "{}", " 1"])


@settings(max_examples=500, deadline=None)
@given(frames, around, around)
def test_incoming_text_reads_as_json_loads_reads_it(value, before, after):
    from kefu.protocols.fields import _loads

    text = before + json.dumps(value) + after
    assert _read(_loads, text) == _read(json.loads, text)


@pytest.mark.parametrize(
    "text", ["", " ", "{", '{"a":1', '{"a" 1}', "[1,]", "NaN", "-Infinity", "1e400", "[" * 5000]
)
def test_broken_or_odd_incoming_text_fails_or_reads_as_json_loads(text):
    from kefu.protocols.fields import _loads

    assert _read(_loads, text) == _read(json.loads, text)
