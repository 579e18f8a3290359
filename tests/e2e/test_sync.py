"""Read positions across devices, receipts, unread counts and membership."""

from __future__ import annotations

import pytest

from parley.client import ParleyClientError
from tests.e2e.conftest import DELIVERY_S, People


def of_type(kind: str, chat_id: int | None = None):
    def matches(frame: dict) -> bool:
        if frame["type"] != kind:
            return False
        if chat_id is None:
            return True
        return frame.get("chat_id", frame.get("message", {}).get("chat_id")) == chat_id

    return matches


async def test_reading_on_the_laptop_clears_the_phones_unread_count(people: People):
    """alice reads on her laptop; her phone is told and shows 0 unread."""
    bob = people.client("bob")
    phone = people.client("alice", "phone")
    laptop = people.client("alice", "laptop")
    chat = await bob.open_private_chat(people.id("alice"))

    async with phone.connect() as phone_live, laptop.connect() as laptop_live:
        for number in range(3):
            await bob.send(chat["id"], f"news {number}")
        await phone_live.wait_for(
            lambda f: f["type"] == "message" and f["message"]["seq"] == 3, DELIVERY_S
        )
        assert [c["unread_count"] for c in await phone.chats()] == [3]

        await laptop_live.read(chat["id"], 3)
        told = await phone_live.wait_for(of_type("read", chat["id"]), DELIVERY_S)

    assert told["read_seq"] == 3 and told["unread_count"] == 0
    assert [c["unread_count"] for c in await phone.chats()] == [0]
    assert [c["unread_count"] for c in await laptop.chats()] == [0]


async def test_a_read_position_only_moves_forward(people: People):
    """Reading an older sequence leaves the position where it was."""
    alice, bob = people.client("alice"), people.client("bob")
    chat = await bob.open_private_chat(people.id("alice"))
    for number in range(5):
        await bob.send(chat["id"], f"m{number}")

    await alice.read(chat["id"], 4)
    back = await alice.read(chat["id"], 2)

    assert back == {"chat_id": chat["id"], "read_seq": 4, "unread_count": 1}
    with pytest.raises(ParleyClientError) as refused:
        await alice.read(chat["id"], 6)
    assert refused.value.code == "seq_out_of_range"


async def test_sending_reads_the_chat_for_the_sender(people: People):
    """bob's own messages never count as unread for bob."""
    alice, bob = people.client("alice"), people.client("bob")
    chat = await bob.open_private_chat(people.id("alice"))
    await alice.send(chat["id"], "one")
    await alice.send(chat["id"], "two")

    await bob.send(chat["id"], "reply")

    assert (await bob.chat(chat["id"]))["unread_count"] == 0
    assert (await alice.chat(chat["id"]))["unread_count"] == 1
    await bob.send(chat["id"], "more")
    assert (await bob.chat(chat["id"]))["unread_count"] == 0
    assert (await alice.chat(chat["id"]))["unread_count"] == 2


async def test_only_the_sender_sees_who_got_and_read_a_message(people: People):
    """In a group, carol may not ask who has read alice's message."""
    alice, carol = people.client("alice"), people.client("carol")
    group = await alice.create_group("club", [people.id("bob"), people.id("carol")])
    sent = await alice.send(group["id"], "for the club")

    with pytest.raises(ParleyClientError) as refused:
        await carol.receipts(group["id"], sent["message"]["seq"])
    mine = await alice.receipts(group["id"], sent["message"]["seq"])

    assert (refused.value.status, refused.value.code) == (403, "not_sender")
    assert len(mine["recipients"]) == 2


async def test_the_sender_sees_sent_then_delivered_then_read(people: People):
    """A receipt arrives when bob's device acknowledges, another when he reads."""
    alice, bob = people.client("alice"), people.client("bob")
    chat = await alice.open_private_chat(people.id("bob"))

    async with alice.connect() as phone:
        sent = await phone.send(chat["id"], "did you get this?")
        seq = sent["message"]["seq"]
        before = await alice.receipts(chat["id"], seq)

        async with bob.connect() as bobs_phone:
            delivered = await phone.wait_for(of_type("receipt", chat["id"]), DELIVERY_S)
            after_ack = await alice.receipts(chat["id"], seq)
            await bobs_phone.read(chat["id"], seq)
            read = await phone.wait_for(of_type("receipt", chat["id"]), DELIVERY_S)

    assert before["recipients"] == [{"user_id": people.id("bob"), "state": "sent"}]
    assert delivered["delivered_seq"] == seq and delivered["read_seq"] < seq
    assert after_ack["recipients"][0]["state"] == "delivered"
    assert read["read_seq"] == seq
    final = await alice.receipts(chat["id"], seq)
    assert final["recipients"] == [{"user_id": people.id("bob"), "state": "read"}]


async def test_a_group_shows_receipts_per_recipient(people: People):
    """In a group, each member's state is shown apart."""
    alice, bob, carol = (
        people.client("alice"),
        people.client("bob"),
        people.client("carol"),
    )
    group = await alice.create_group("trip", [people.id("bob"), people.id("carol")])
    sent = await alice.send(group["id"], "who's in?")
    seq = sent["message"]["seq"]

    async with bob.connect() as bobs_phone:
        await bobs_phone.wait_for(of_type("message", group["id"]), DELIVERY_S)
        await bobs_phone.read(group["id"], seq)

    states = {
        r["user_id"]: r["state"]
        for r in (await alice.receipts(group["id"], seq))["recipients"]
    }
    assert states == {people.id("bob"): "read", people.id("carol"): "sent"}
    assert (await carol.chat(group["id"]))["unread_count"] == 1


async def test_only_the_admin_manages_members_and_anyone_may_leave(people: People):
    """bob cannot add or remove; alice can; carol leaves on her own."""
    alice, bob, carol = (
        people.client("alice"),
        people.client("bob"),
        people.client("carol"),
    )
    group = await alice.create_group("club", [people.id("bob"), people.id("carol")])

    with pytest.raises(ParleyClientError) as refused:
        await bob.add_member(group["id"], people.id("dave"))
    assert (refused.value.status, refused.value.code) == (403, "not_admin")
    with pytest.raises(ParleyClientError):
        await bob.remove_member(group["id"], people.id("carol"))

    await alice.add_member(group["id"], people.id("dave"))
    await carol.remove_member(group["id"], people.id("carol"))

    members = (await alice.chat(group["id"]))["members"]
    assert members == sorted([people.id("alice"), people.id("bob"), people.id("dave")])
    assert group["admin_id"] == people.id("alice")


async def test_a_removed_member_gets_and_reads_nothing_after_removal(people: People):
    """bob is removed: no new messages reach him and history stops there."""
    alice, bob = people.client("alice"), people.client("bob")
    group = await alice.create_group("team", [people.id("bob"), people.id("carol")])
    await alice.send(group["id"], "before")

    async with bob.connect() as bobs_phone:
        await alice.remove_member(group["id"], people.id("bob"))
        removed = await bobs_phone.wait_for(
            lambda f: f["type"] == "member" and f["change"] == "removed", DELIVERY_S
        )
        await alice.send(group["id"], "after")
        later = await bobs_phone.drain(0.5)

    assert removed["change"] == "removed" and removed["user_id"] == people.id("bob")
    assert not [f for f in later if f["type"] == "message"]
    assert [m["text"] for m in await bob.history(group["id"])] == ["before"]
    with pytest.raises(ParleyClientError) as refused:
        await bob.send(group["id"], "still here?")
    assert refused.value.code == "chat_not_found"
    assert (await bob.chat(group["id"]))["active"] is False


async def test_a_new_member_does_not_see_what_came_before_joining(people: People):
    """dave, added later, sees only later messages and has nothing unread."""
    alice, dave = people.client("alice"), people.client("dave")
    group = await alice.create_group("book club", [people.id("bob")])
    await alice.send(group["id"], "secret plans")

    await alice.add_member(group["id"], people.id("dave"))
    assert (await dave.chat(group["id"]))["unread_count"] == 0
    await alice.send(group["id"], "welcome dave")

    assert [m["text"] for m in await dave.history(group["id"])] == ["welcome dave"]
    assert (await dave.chat(group["id"]))["unread_count"] == 1


async def test_a_group_refuses_members_beyond_its_size_limit(people: People):
    """The configured limit (1024 by default) bounds a group."""
    alice = people.client("alice")
    crowd = [people.id(f"user{n}") for n in range(1024)]

    with pytest.raises(ParleyClientError) as refused:
        await alice.create_group("too big", crowd)

    assert (refused.value.status, refused.value.code) == (409, "chat_full")


async def test_the_chat_list_puts_recent_activity_first_with_previews(people: People):
    """The chat with the newest message comes first, with its last text."""
    alice = people.client("alice")
    first = await alice.open_private_chat(people.id("bob"))
    second = await alice.open_private_chat(people.id("carol"))
    await alice.send(second["id"], "to carol")
    await alice.send(first["id"], "to bob, later")

    listed = await alice.chats()

    assert [chat["id"] for chat in listed] == [first["id"], second["id"]]
    assert listed[0]["last_message"]["text"] == "to bob, later"


async def test_a_client_without_a_websocket_acknowledges_over_http(people: People):
    """bob reads his log over HTTP and acknowledges it: alice sees delivered."""
    alice, bob = people.client("alice"), people.client("bob")
    chat = await alice.open_private_chat(people.id("bob"))
    sent = await alice.send(chat["id"], "are you on the web?")

    page = await bob.events()
    await bob.ack_events(page["cursor"])

    receipts = await alice.receipts(chat["id"], sent["message"]["seq"])
    assert receipts["recipients"] == [
        {"user_id": people.id("bob"), "state": "delivered"}
    ]
