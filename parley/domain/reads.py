"""Read positions, delivery positions and unread arithmetic.

A read position only moves forward, and sending a message reads the chat up to
it for its sender. Therefore every message after a member's read position was
sent by someone else, and the unread count is a subtraction.
"""

from __future__ import annotations

from parley.domain.chats import Membership
from parley.errors import BadRequest, Forbidden


def advance(current: int, proposed: int) -> int:
    """A position after a request to move it: forward only."""
    return max(current, proposed)


def check_read_target(member: Membership, seq: object, chat_last_seq: int) -> int:
    """The sequence a member asks to read up to, checked against the chat."""
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise BadRequest("invalid_field", "Field 'seq' must be a non-negative integer.")
    if seq > member.visible_last(chat_last_seq):
        raise BadRequest(
            "seq_out_of_range",
            f"Sequence {seq} is past the last message you can see in this chat.",
        )
    return seq


def unread_count(member: Membership, chat_last_seq: int) -> int:
    """Messages of others after the member's read position; never negative."""
    return max(0, member.visible_last(chat_last_seq) - member.read_seq)


def check_receipts_viewer(sender_id: str, user_id: str) -> None:
    """Who got and read a message is for its sender to know, not the group."""
    if sender_id != user_id:
        raise Forbidden("not_sender", "Only a message's sender sees its receipts.")


def receipt_state(seq: int, delivered_seq: int, read_seq: int) -> str:
    """What the sender sees for one recipient of the message at ``seq``."""
    if read_seq >= seq:
        return "read"
    if delivered_seq >= seq:
        return "delivered"
    return "sent"
