"""Chat rules: who sees which messages, who manages members, limits."""

from __future__ import annotations

import pytest

from parley.domain.chats import (
    ChatKind,
    Membership,
    Role,
    check_can_manage_members,
    check_group_size,
    check_title,
    check_user_id,
    next_admin,
    private_chat_key,
)
from parley.errors import BadRequest, Conflict, Forbidden


def member(user_id="alice", role=Role.MEMBER, joined_after=0, left_at=None):
    return Membership(
        1, user_id, role, joined_after, left_at, joined_after, joined_after
    )


def test_a_member_sees_only_messages_within_their_window():
    late = member(joined_after=10, left_at=20)
    assert [seq for seq in range(1, 30) if late.sees(seq)] == list(range(11, 21))


def test_the_private_chat_key_is_the_same_from_either_side():
    assert private_chat_key("alice", "bob") == private_chat_key("bob", "alice")
    with pytest.raises(BadRequest):
        private_chat_key("alice", "alice")


@pytest.mark.parametrize("user_id", ["", " ", "a" * 65, "-lead", "a b", "é", 7, None])
def test_malformed_user_ids_are_refused(user_id):
    with pytest.raises(BadRequest) as refused:
        check_user_id(user_id)
    assert refused.value.code == "invalid_user_id"


def test_titles_are_trimmed_and_bounded():
    assert check_title("  trip  ") == "trip"
    for bad in ("", "   ", "x" * 101, None):
        with pytest.raises(BadRequest):
            check_title(bad)


def test_only_a_groups_admin_manages_members():
    check_can_manage_members(ChatKind.GROUP, member(role=Role.ADMIN))
    with pytest.raises(Forbidden) as refused:
        check_can_manage_members(ChatKind.GROUP, member())
    assert refused.value.code == "not_admin"
    with pytest.raises(Forbidden):
        check_can_manage_members(ChatKind.PRIVATE, member(role=Role.ADMIN))


def test_a_group_over_its_limit_is_refused():
    check_group_size(10, limit=10)
    with pytest.raises(Conflict):
        check_group_size(11, limit=10)


def test_the_longest_standing_active_member_becomes_admin():
    members = [
        member("zoe", joined_after=0, left_at=3),
        member("carol", joined_after=5),
        member("bob", joined_after=1),
    ]
    assert next_admin(members).user_id == "bob"
    assert next_admin([member("zoe", left_at=3)]) is None
