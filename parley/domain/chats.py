"""Who may be in a chat, who may do what there, and which messages each sees."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from parley.domain.text import normalize_text
from parley.errors import BadRequest, Conflict, Forbidden

MAX_TITLE_CHARACTERS = 100

# Matched whole (fullmatch): "$" would let a trailing newline through.
_USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-@]{0,63}")


class ChatKind(StrEnum):
    PRIVATE = "private"
    GROUP = "group"


class Role(StrEnum):
    ADMIN = "admin"
    MEMBER = "member"


@dataclass(frozen=True, slots=True)
class Membership:
    """One user's place in one chat.

    ``joined_after`` is the last sequence of the chat when the user joined: the
    user sees only later messages. ``left_at`` is the last sequence the user
    may see after being removed or leaving, or None while still a member.
    """

    chat_id: int
    user_id: str
    role: Role
    joined_after: int
    left_at: int | None
    read_seq: int
    delivered_seq: int
    muted: bool = False

    @property
    def active(self) -> bool:
        return self.left_at is None

    def sees(self, seq: int) -> bool:
        """Whether the message at ``seq`` is within this member's window."""
        if seq <= self.joined_after:
            return False
        return self.left_at is None or seq <= self.left_at

    def visible_last(self, chat_last_seq: int) -> int:
        """The newest sequence of the chat this member may see."""
        if self.left_at is None:
            return chat_last_seq
        return min(chat_last_seq, self.left_at)


def check_user_id(user_id: object) -> str:
    if not isinstance(user_id, str) or not _USER_ID.fullmatch(user_id):
        raise BadRequest(
            "invalid_user_id",
            "A user id is 1 to 64 letters, digits or . _ - @, starting with a "
            "letter or digit.",
        )
    return user_id


def private_chat_key(user_a: str, user_b: str) -> str:
    """The key that makes asking twice for a private chat give the same chat."""
    if user_a == user_b:
        raise BadRequest("invalid_user_id", "A private chat needs another user.")
    low, high = sorted((user_a, user_b))
    return f"{low}\n{high}"


def check_title(title: object) -> str:
    """A title is text by the rules of messages, one line, at most 100 characters."""
    if not isinstance(title, str) or "\n" in title or "\t" in title:
        raise BadRequest("invalid_title", "A title is one line of text.")
    try:
        normalized = normalize_text(title.strip(), limit=MAX_TITLE_CHARACTERS)
    except BadRequest as refusal:
        raise BadRequest("invalid_title", refusal.message) from None
    if normalized is None:
        raise BadRequest("invalid_title", "A group needs a title that is not blank.")
    return normalized


def check_group_size(member_count: int, limit: int) -> None:
    if member_count > limit:
        raise Conflict(
            "chat_full",
            f"A group holds at most {limit} members; this would be {member_count}.",
        )


def check_can_manage_members(kind: ChatKind, actor: Membership) -> None:
    """Only the admin of a group adds or removes others."""
    if kind is ChatKind.PRIVATE:
        raise Forbidden("private_chat", "A private chat has exactly two members.")
    if actor.role is not Role.ADMIN:
        raise Forbidden("not_admin", "Only the group's admin may do that.")


def next_admin(remaining: list[Membership]) -> Membership | None:
    """Who becomes admin when the admin leaves: the longest-standing member."""
    active = [member for member in remaining if member.active]
    if not active:
        return None
    return min(active, key=lambda member: (member.joined_after, member.user_id))
