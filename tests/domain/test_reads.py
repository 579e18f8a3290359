"""Read positions and unread arithmetic, as properties over any history."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parley.domain import reads
from parley.domain.chats import Membership, Role
from parley.errors import BadRequest


def member(read_seq: int = 0, joined_after: int = 0, left_at: int | None = None):
    return Membership(
        chat_id=1,
        user_id="alice",
        role=Role.MEMBER,
        joined_after=joined_after,
        left_at=left_at,
        read_seq=read_seq,
        delivered_seq=read_seq,
    )


# A history is a list of steps: ("send", by_me) or ("read", target).
steps = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.booleans()),
        st.tuples(st.just("read"), st.integers(min_value=0, max_value=60)),
    ),
    max_size=60,
)


@given(steps)
def test_unread_counts_the_messages_of_others_after_the_read_position(history):
    """Property: the subtraction equals a count by hand, never negative."""
    last_seq, read_seq, senders = 0, 0, {}
    for action, value in history:
        if action == "send":
            last_seq += 1
            senders[last_seq] = value
            if value:
                read_seq = reads.advance(read_seq, last_seq)
        elif value <= last_seq:
            read_seq = reads.advance(read_seq, value)

    counted = sum(1 for seq, by_me in senders.items() if seq > read_seq and not by_me)
    unread = reads.unread_count(member(read_seq), last_seq)
    assert unread == counted >= 0


@given(st.lists(st.integers(min_value=0, max_value=1000), max_size=50))
def test_a_read_position_never_moves_backwards(targets):
    position = 0
    for target in targets:
        moved = reads.advance(position, target)
        assert moved >= position and moved >= target
        position = moved


@given(
    st.integers(min_value=0, max_value=100),
    st.integers(min_value=0, max_value=100),
    st.integers(min_value=0, max_value=200),
)
def test_a_removed_member_has_nothing_unread_after_removal(joined, extra, more):
    """Messages after left_at never count, however many there are."""
    left_at = joined + extra
    gone = member(read_seq=joined, joined_after=joined, left_at=left_at)
    assert reads.unread_count(gone, left_at + more) == extra


def test_reading_past_the_last_visible_message_is_refused():
    with pytest.raises(BadRequest) as refused:
        reads.check_read_target(member(), 6, chat_last_seq=5)
    assert refused.value.code == "seq_out_of_range"


@pytest.mark.parametrize("seq", [-1, "3", 2.5, True, None])
def test_a_read_target_must_be_a_non_negative_integer(seq):
    with pytest.raises(BadRequest):
        reads.check_read_target(member(), seq, chat_last_seq=5)


@pytest.mark.parametrize(
    "delivered, read, state",
    [(0, 0, "sent"), (5, 0, "delivered"), (5, 5, "read"), (4, 4, "sent")],
)
def test_a_receipt_shows_the_furthest_state_reached(delivered, read, state):
    assert reads.receipt_state(5, delivered, read) == state
