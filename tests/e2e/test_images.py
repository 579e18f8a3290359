"""Images: uploaded, checked, cleaned, attached, and shown only to those allowed."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from parley.client import ParleyClientError
from tests.e2e.conftest import DELIVERY_S, People
from tests.support import IMAGES

ACCEPTED = {
    "astronaut.png": "image/png",
    "chelsea.png": "image/png",
    "coffee.png": "image/png",
    "rocket.jpg": "image/jpeg",
    "coffee.webp": "image/webp",
    "chelsea_animated.gif": "image/gif",
    "rocket_exif_gps_orient6.jpg": "image/jpeg",
    "coffee_exactly_1MiB.jpg": "image/jpeg",
}
REFUSED = {
    "coffee_1MiB_plus_1.jpg": (413, "image_too_large"),
    "bomb_30000x30000.png": (422, "image_too_many_pixels"),
    "truncated.jpg": (422, "image_unreadable"),
    "not_an_image.jpg": (422, "image_unreadable"),
}


@pytest.mark.parametrize("name", sorted(ACCEPTED))
async def test_a_real_photo_is_accepted(people: People, name: str):
    """Each accepted photograph is stored with its sniffed type and a thumbnail."""
    alice = people.client("alice")

    image = await alice.upload_image((IMAGES / name).read_bytes())
    stored = await alice.download_image(image["id"])
    thumbnail = await alice.download_image(image["id"], thumbnail=True)

    assert image["content_type"] == ACCEPTED[name]
    assert len(stored) == image["bytes"]
    with Image.open(io.BytesIO(stored)) as decoded:
        assert decoded.size == (image["width"], image["height"])
    with Image.open(io.BytesIO(thumbnail)) as preview:
        assert preview.format == "JPEG" and max(preview.size) <= 320


@pytest.mark.parametrize("name", sorted(REFUSED))
async def test_a_bad_file_is_refused_and_nothing_is_stored(people: People, name: str):
    """Oversized, bomb, truncated and disguised files get their stable code."""
    alice = people.client("alice")

    with pytest.raises(ParleyClientError) as refused:
        await alice.upload_image((IMAGES / name).read_bytes())

    assert (refused.value.status, refused.value.code) == REFUSED[name]


async def test_a_rotated_photo_is_stored_upright_without_its_gps(people: People):
    """EXIF orientation is applied, then every EXIF field (GPS too) is dropped."""
    alice = people.client("alice")

    image = await alice.upload_image(
        (IMAGES / "rocket_exif_gps_orient6.jpg").read_bytes()
    )
    stored = await alice.download_image(image["id"])

    with Image.open(io.BytesIO(stored)) as decoded:
        assert decoded.height > decoded.width
        assert len(decoded.getexif()) == 0
        assert "exif" not in decoded.info


async def test_an_animated_gif_keeps_its_frames(people: People):
    alice = people.client("alice")

    image = await alice.upload_image((IMAGES / "chelsea_animated.gif").read_bytes())

    assert image["frames"] == 4


async def test_images_travel_with_a_message_and_only_members_may_download(
    people: People,
):
    """carol gets three photos in the group; dave, outside it, gets nothing."""
    alice, carol, dave = (
        people.client("alice"),
        people.client("carol"),
        people.client("dave"),
    )
    group = await alice.create_group("photos", [people.id("bob"), people.id("carol")])
    ids = [
        (await alice.upload_image((IMAGES / name).read_bytes()))["id"]
        for name in ("rocket.jpg", "coffee.webp", "chelsea.png")
    ]

    async with carol.connect() as carols_web:
        await alice.send(group["id"], "look", images=ids)
        frame = await carols_web.wait_for(lambda f: f["type"] == "message", DELIVERY_S)
        downloaded = [
            await carol.download_image(media_id, chat_id=group["id"])
            for media_id in ids
        ]

    assert [image["id"] for image in frame["message"]["images"]] == ids
    assert all(downloaded)
    for media_id in ids:
        for attempt in (
            dave.download_image(media_id, chat_id=group["id"]),
            dave.download_image(media_id),
            carol.download_image(media_id),
        ):
            with pytest.raises(ParleyClientError) as refused:
                await attempt
            assert (refused.value.status, refused.value.code) == (
                404,
                "media_not_found",
            )


async def test_a_message_cannot_carry_an_image_someone_else_uploaded(people: People):
    """bob cannot attach alice's upload by its id."""
    alice, bob = people.client("alice"), people.client("bob")
    chat = await bob.open_private_chat(people.id("alice"))
    image = await alice.upload_image((IMAGES / "rocket.jpg").read_bytes())

    with pytest.raises(ParleyClientError) as refused:
        await bob.send(chat["id"], "mine now", images=[image["id"]])

    assert refused.value.code == "unknown_image"


async def test_a_message_of_only_images_is_allowed_but_four_are_too_many(
    people: People,
):
    alice = people.client("alice")
    chat = await alice.open_private_chat(people.id("bob"))
    names = ("rocket.jpg", "coffee.webp", "chelsea.png", "coffee.png")
    ids = [(await alice.upload_image((IMAGES / n).read_bytes()))["id"] for n in names]

    sent = await alice.send(chat["id"], None, images=ids[:3])
    with pytest.raises(ParleyClientError) as refused:
        await alice.send(chat["id"], None, images=ids)

    assert sent["message"]["text"] is None and len(sent["message"]["images"]) == 3
    assert refused.value.code == "too_many_images"


async def test_a_member_added_later_cannot_download_an_earlier_image(people: People):
    """dave joins after the photo was sent: it is outside his window."""
    alice, dave = people.client("alice"), people.client("dave")
    group = await alice.create_group("before dave", [people.id("bob")])
    image = await alice.upload_image((IMAGES / "rocket.jpg").read_bytes())
    await alice.send(group["id"], "old photo", images=[image["id"]])

    await alice.add_member(group["id"], people.id("dave"))

    with pytest.raises(ParleyClientError) as refused:
        await dave.download_image(image["id"], chat_id=group["id"])
    assert refused.value.code == "media_not_found"
