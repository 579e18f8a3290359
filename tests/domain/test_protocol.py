"""The WebSocket frame parser: every input is a frame or a stable refusal."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parley.domain.messages import Event
from parley.domain.protocol import Ack, Hello, Read, Send, parse_frame
from parley.errors import ParleyError

LIMIT = 65_536


def test_the_client_frames_parse_to_their_commands():
    assert parse_frame('{"type":"hello","cursor":3}', LIMIT) == Hello(None, 3)
    assert parse_frame('{"type":"ack","cursor":9}', LIMIT) == Ack(9)
    assert parse_frame('{"type":"read","chat_id":1,"seq":2,"ref":"r"}', LIMIT) == Read(
        "r", 1, 2
    )
    sent = parse_frame('{"type":"send","chat_id":1,"client_id":"c","text":"hi"}', LIMIT)
    assert isinstance(sent, Send) and sent.text == "hi"


@pytest.mark.parametrize(
    "raw, code",
    [
        ("", "malformed_frame"),
        ("{", "malformed_frame"),
        ("null", "malformed_frame"),
        ('{"type": 3}', "unknown_frame_type"),
        ('{"type":"ack"}', "invalid_field"),
        ('{"type":"ack","cursor":true}', "invalid_field"),
        ('{"type":"read","chat_id":1,"seq":1,"ref":7}', "invalid_field"),
        ('{"type":"ack","cursor":9223372036854775808}', "invalid_field"),
        ("[" * 100_000, "frame_too_large"),
    ],
)
def test_bad_frames_are_refused_with_a_stable_code(raw: str, code: str):
    with pytest.raises(ParleyError) as refused:
        parse_frame(raw, LIMIT)
    assert refused.value.code == code


def test_deep_nesting_within_the_size_limit_is_refused_not_crashed():
    with pytest.raises(ParleyError) as refused:
        parse_frame("[" * 60_000, LIMIT)
    assert refused.value.code == "malformed_frame"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300),
        st.builds(
            json.dumps,
            st.dictionaries(
                st.sampled_from(
                    ["type", "chat_id", "seq", "cursor", "ref", "text", "token"]
                ),
                json_values,
            ),
        ),
        st.builds(
            lambda kind, rest: json.dumps({"type": kind, **rest}),
            st.sampled_from(["hello", "send", "ack", "read", "ping"]),
            st.dictionaries(st.text(max_size=10), json_values, max_size=4),
        ),
    )
)
def test_any_input_is_a_frame_or_a_parley_refusal(raw):
    """Fuzz: nothing but a parsed frame or a ParleyError comes out."""
    with contextlib.suppress(ParleyError):
        parse_frame(raw, LIMIT)


def test_an_event_frame_splices_type_and_cursor_into_the_shared_body():
    event = Event("bob", 7, "message", b'{"message":{"seq":1}}')
    assert json.loads(event.frame()) == {
        "type": "message",
        "cursor": 7,
        "message": {"seq": 1},
    }
    empty = Event("bob", 8, "read", b"{}")
    assert json.loads(empty.frame()) == {"type": "read", "cursor": 8}
