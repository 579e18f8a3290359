"""Chats and messages over real HTTP and WebSocket connections."""

from __future__ import annotations

import pytest

from parley.client import ParleyClientError
from tests.e2e.conftest import DELIVERY_S, People, texts


def is_message(frame: dict) -> bool:
    return frame["type"] == "message"


async def test_asking_twice_for_a_private_chat_gives_the_same_chat(people: People):
    """alice→bob and bob→alice name one chat."""
    alice, bob = people.client("alice"), people.client("bob")

    first = await alice.open_private_chat(people.id("bob"))
    again = await alice.open_private_chat(people.id("bob"))
    from_bob = await bob.open_private_chat(people.id("alice"))

    assert first["id"] == again["id"] == from_bob["id"]
    assert first["kind"] == "private"
    assert sorted(first["members"]) == sorted([people.id("alice"), people.id("bob")])


async def test_a_message_sent_over_the_websocket_reaches_the_other_person(
    people: People,
):
    """bob's live device gets alice's message with the next sequence number."""
    alice, bob = people.client("alice"), people.client("bob")
    chat = await alice.open_private_chat(people.id("bob"))

    async with alice.connect() as phone, bob.connect() as laptop:
        await laptop.synced.wait()
        sent = await phone.send(chat["id"], "hello bob")
        received = await laptop.wait_for(is_message, DELIVERY_S)

    assert sent["type"] == "sent"
    assert sent["message"]["seq"] == 1
    assert received["message"]["text"] == "hello bob"
    assert received["message"]["sender_id"] == people.id("alice")
    assert received["message"]["sent_at"].endswith("+00:00")


async def test_every_message_gets_the_next_sequence_of_its_chat(people: People):
    """HTTP and WebSocket sends share one gap-free sequence."""
    alice, bob = people.client("alice"), people.client("bob")
    chat = await alice.open_private_chat(people.id("bob"))

    seqs = []
    async with alice.connect() as phone:
        for number in range(6):
            if number % 2:
                reply = await phone.send(chat["id"], f"ws {number}")
            else:
                reply = await bob.send(chat["id"], f"http {number}")
            seqs.append(reply["message"]["seq"])

    assert seqs == [1, 2, 3, 4, 5, 6]
    history = await bob.history(chat["id"])
    assert [message["seq"] for message in history] == [1, 2, 3, 4, 5, 6]


async def test_a_resend_with_the_same_client_id_is_one_message(people: People):
    """bob retries a send; the chat holds it once and the retry says duplicate."""
    alice, bob = people.client("alice"), people.client("bob")
    chat = await bob.open_private_chat(people.id("alice"))

    first = await bob.send(chat["id"], "only once", client_id="retry-1")
    async with bob.connect() as phone:
        again_ws = await phone.send(chat["id"], "only once", client_id="retry-1")
    again_http = await bob.send(chat["id"], "only once", client_id="retry-1")

    assert first["duplicate"] is False
    assert again_ws["duplicate"] is True and again_http["duplicate"] is True
    assert again_ws["message"]["seq"] == again_http["message"]["seq"] == 1
    assert [m["text"] for m in await alice.history(chat["id"])] == ["only once"]


async def test_history_pages_backwards_and_forwards_by_sequence(people: People):
    """before= pages back from the newest, after= pages forward."""
    alice = people.client("alice")
    chat = await alice.open_private_chat(people.id("bob"))
    for number in range(1, 11):
        await alice.send(chat["id"], f"m{number}")

    newest = await alice.history(chat["id"], limit=4)
    older = await alice.history(chat["id"], before=newest[0]["seq"], limit=4)
    forward = await alice.history(chat["id"], after=2, limit=3)

    assert [m["seq"] for m in newest] == [7, 8, 9, 10]
    assert [m["seq"] for m in older] == [3, 4, 5, 6]
    assert [m["seq"] for m in forward] == [3, 4, 5]
    with pytest.raises(ParleyClientError) as refused:
        await alice.history(chat["id"], before=5, after=2)
    assert refused.value.code == "invalid_field"


@pytest.mark.parametrize("case", texts(), ids=lambda case: case["id"])
async def test_texts_are_accepted_or_refused_as_the_brief_says(
    people: People, case: dict
):
    """Each text of the shared set gets its verdict, over HTTP and WebSocket."""
    alice = people.client("alice")
    chat = await alice.open_private_chat(people.id("bob"))

    outcomes = []
    try:
        reply = await alice.send(chat["id"], case["text"])
        outcomes.append(("accept", reply["message"]["text"]))
    except ParleyClientError as error:
        outcomes.append(("reject", error.code))
    async with alice.connect() as phone:
        try:
            reply = await phone.send(chat["id"], case["text"])
            outcomes.append(("accept", reply["message"]["text"]))
        except ParleyClientError as error:
            outcomes.append(("reject", error.code))

    assert [verdict for verdict, _ in outcomes] == [case["verdict"]] * 2
    if case["verdict"] == "accept":
        assert all(len(text) == case["characters_after_nfc"] for _, text in outcomes)
    else:
        assert all(code.startswith(("text_", "message_")) for _, code in outcomes)
        assert (await alice.chat(chat["id"]))["last_seq"] == 0


async def test_a_refused_message_changes_nothing(people: People):
    """Too many images, unknown image, bad client id: no sequence is used."""
    alice = people.client("alice")
    chat = await alice.open_private_chat(people.id("bob"))
    fake_image = "ab" * 32

    refusals = []
    for body in (
        {"text": "x", "images": [fake_image] * 4},
        {"text": "x", "images": [fake_image]},
        {"text": "x", "client_id": "has space"},
    ):
        try:
            await alice.send(
                chat["id"],
                body["text"],
                images=body.get("images"),
                client_id=body.get("client_id"),
            )
        except ParleyClientError as error:
            refusals.append(error.code)

    assert refusals == ["too_many_images", "unknown_image", "invalid_client_id"]
    assert (await alice.chat(chat["id"]))["last_seq"] == 0
    assert await alice.history(chat["id"]) == []


async def test_a_chat_you_are_not_in_looks_like_one_that_does_not_exist(people: People):
    """carol cannot read, send to or inspect alice and bob's chat."""
    alice, carol = people.client("alice"), people.client("carol")
    chat = await alice.open_private_chat(people.id("bob"))
    await alice.send(chat["id"], "private")

    codes = set()
    for attempt in (
        carol.history(chat["id"]),
        carol.send(chat["id"], "let me in"),
        carol.chat(chat["id"]),
        carol.read(chat["id"], 1),
        carol.receipts(chat["id"], 1),
        carol.chat(999_999),
    ):
        with pytest.raises(ParleyClientError) as refused:
            await attempt
        codes.add((refused.value.status, refused.value.code))

    assert codes == {(404, "chat_not_found")}
