"""The HTTP API: commands and queries, described by the OpenAPI it serves."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from parley.auth import Identity
from parley.errors import BadRequest, PayloadTooLarge
from parley.server.messenger import Messenger

MAX_ID = 2**63 - 1
ChatId = Annotated[int, Path(ge=1, le=MAX_ID, description="The chat's id.")]
MediaId = Annotated[str, Path(pattern="^[0-9a-f]{64}$", description="The image's id.")]

_bearer = HTTPBearer(auto_error=False, description="A JWT naming the user and device.")

router = APIRouter(prefix="/v1")


# -- bodies and answers ------------------------------------------------------


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable code.")
    message: str = Field(description="What was wrong, in a sentence.")


class ErrorAnswer(BaseModel):
    error: ErrorBody


class PrivateChatRequest(BaseModel):
    user_id: str = Field(description="The other person.")


class GroupRequest(BaseModel):
    title: str = Field(description="1 to 100 characters.")
    members: list[str] = Field(default_factory=list, description="Other members.")


class MemberRequest(BaseModel):
    user_id: str


# The fields of a send are checked by the same rules, with the same error
# codes, as a send over the WebSocket: the model only describes them.
_Text = Annotated[Any, WithJsonSchema({"type": "string"})]
_OptionalText = Annotated[Any, WithJsonSchema({"type": ["string", "null"]})]
_Ids = Annotated[Any, WithJsonSchema({"type": "array", "items": {"type": "string"}})]


class SendRequest(BaseModel):
    # Required all the same: a send without one is refused as invalid_client_id.
    model_config = ConfigDict(json_schema_extra={"required": ["client_id"]})

    client_id: _Text = Field(
        None,
        description="Chosen by the client, unique per chat and sender; a retry "
        "with the same id returns the stored message instead of a second one.",
    )
    text: _OptionalText = Field(None, description="At most 2000 characters after NFC.")
    images: _Ids = Field(
        default_factory=list, description="Ids of images uploaded before, at most 3."
    )


class ReadRequest(BaseModel):
    seq: int = Field(
        ge=0, le=MAX_ID, strict=True, description="Read the chat up to this sequence."
    )


class Image(BaseModel):
    id: str
    content_type: str
    bytes: int
    width: int
    height: int
    frames: int


class MessageOut(BaseModel):
    chat_id: int
    seq: int
    sender_id: str
    client_id: str
    text: str | None
    images: list[Image]
    sent_at: str = Field(description="Server time, ISO 8601 in UTC.")


class SentAnswer(BaseModel):
    message: MessageOut
    duplicate: bool = Field(description="True when the client id was already used.")


class Preview(BaseModel):
    seq: int
    sender_id: str
    text: str | None = Field(description="The first 100 characters.")
    image_count: int
    sent_at: str


class ChatOut(BaseModel):
    id: int
    kind: str = Field(description="'private' or 'group'.")
    title: str | None
    admin_id: str | None
    members: list[str]
    last_seq: int = Field(
        description="The chat's newest sequence; for a member who has left, the "
        "last before leaving. A member added later sees only what came after."
    )
    read_seq: int
    unread_count: int
    active: bool = Field(description="False once you left or were removed.")
    muted: bool = Field(description="True: no push notifications for this chat.")
    last_message: Preview | None


class ChatList(BaseModel):
    chats: list[ChatOut]
    next_offset: int | None = Field(description="The next page's offset, if any.")


class MessagePage(BaseModel):
    messages: list[MessageOut]


class ReadAnswer(BaseModel):
    chat_id: int
    read_seq: int
    unread_count: int


class Receipt(BaseModel):
    user_id: str
    state: str = Field(description="'sent', 'delivered' or 'read'.")


class ReceiptsAnswer(BaseModel):
    chat_id: int
    seq: int
    recipients: list[Receipt]


class PresenceAnswer(BaseModel):
    user_id: str
    online: bool
    last_seen: str | None = Field(description="Shown only while offline.")


class AckRequest(BaseModel):
    cursor: int = Field(
        ge=0, le=MAX_ID, strict=True, description="Processed up to here."
    )


class PushRequest(BaseModel):
    service: str = Field(description="'apns', 'fcm' or 'webpush'.")
    token: str = Field(
        description="The APNs device token (hex), the FCM registration token, or "
        "the Web Push subscription's endpoint URL."
    )
    p256dh: str | None = Field(None, description="Web Push: the subscription's key.")
    auth: str | None = Field(None, description="Web Push: the subscription's secret.")


class MuteRequest(BaseModel):
    muted: bool = Field(strict=True)


class EventPage(BaseModel):
    events: list[dict[str, Any]] = Field(
        description="Frames as the WebSocket sends them."
    )
    cursor: int = Field(description="The cursor to ask after next time.")


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorAnswer} for status in (400, 401, 404, 409, 413, 422, 503)
}


# -- dependencies ------------------------------------------------------------


def messenger(request: Request) -> Messenger:
    return request.app.state.messenger


async def identity(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Identity:
    token = credentials.credentials if credentials else None
    return request.app.state.verifier.verify(token)


Me = Annotated[Identity, Depends(identity)]
Service = Annotated[Messenger, Depends(messenger)]


# -- chats -------------------------------------------------------------------


@router.post("/chats/private", response_model=ChatOut, responses=ERRORS, tags=["chats"])
async def open_private_chat(body: PrivateChatRequest, me: Me, service: Service) -> dict:
    """The private chat with another user; asking twice gives the same chat."""
    view = await service.open_private_chat(me, body.user_id)
    return view.to_dict()


@router.post(
    "/chats/groups",
    response_model=ChatOut,
    status_code=201,
    responses=ERRORS,
    tags=["chats"],
)
async def create_group(body: GroupRequest, me: Me, service: Service) -> dict:
    """A group with a title; the creator is its admin."""
    view = await service.create_group(me, body.title, body.members)
    return view.to_dict()


@router.get("/chats", response_model=ChatList, responses=ERRORS, tags=["chats"])
async def list_chats(
    me: Me,
    service: Service,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict:
    """Your chats, most recent activity first, with unread counts and previews.

    ``next_offset`` is where the next page starts, or null after the last."""
    views = await service.chats(me, limit + 1, offset)
    more = len(views) > limit
    return {
        "chats": [view.to_dict() for view in views[:limit]],
        "next_offset": offset + limit if more else None,
    }


@router.get(
    "/chats/{chat_id}", response_model=ChatOut, responses=ERRORS, tags=["chats"]
)
async def get_chat(chat_id: ChatId, me: Me, service: Service) -> dict:
    return (await service.chat(me, chat_id)).to_dict()


@router.post(
    "/chats/{chat_id}/members", response_model=ChatOut, responses=ERRORS, tags=["chats"]
)
async def add_member(
    chat_id: ChatId, body: MemberRequest, me: Me, service: Service
) -> dict:
    """The admin adds a member, who sees only messages sent from now on."""
    return (await service.add_member(me, chat_id, body.user_id)).to_dict()


@router.delete(
    "/chats/{chat_id}/members/{user_id}",
    status_code=204,
    responses=ERRORS,
    tags=["chats"],
)
async def remove_member(
    chat_id: ChatId, user_id: str, me: Me, service: Service
) -> Response:
    """The admin removes a member; with your own id, you leave the group."""
    await service.remove_member(me, chat_id, user_id)
    return Response(status_code=204)


# -- messages ----------------------------------------------------------------


@router.post(
    "/chats/{chat_id}/messages",
    response_model=SentAnswer,
    status_code=201,
    responses={**ERRORS, 200: {"model": SentAnswer, "description": "A retry."}},
    tags=["messages"],
)
async def send_message(
    chat_id: ChatId, body: SendRequest, me: Me, service: Service
) -> JSONResponse:
    """Store a message; answered only once it is durable."""
    message, created = await service.send(
        me, chat_id, body.client_id, body.text, body.images
    )
    return JSONResponse(
        {"message": message.to_dict(), "duplicate": not created},
        status_code=201 if created else 200,
    )


@router.get(
    "/chats/{chat_id}/messages",
    response_model=MessagePage,
    responses=ERRORS,
    tags=["messages"],
)
async def history(
    chat_id: ChatId,
    me: Me,
    service: Service,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    after: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict:
    """A page of messages in sequence order: the newest, those ``before`` a
    sequence (paging backwards), or those ``after`` one (paging forwards).
    A page shorter than ``limit`` is the last one in its direction."""
    if before is not None and after is not None:
        raise BadRequest("invalid_field", "Give 'before' or 'after', not both.")
    page = await service.history(me, chat_id, before, after, limit)
    return {"messages": [message.to_dict() for message in page]}


@router.post(
    "/chats/{chat_id}/read",
    response_model=ReadAnswer,
    responses=ERRORS,
    tags=["messages"],
)
async def read(chat_id: ChatId, body: ReadRequest, me: Me, service: Service) -> dict:
    """Move your read position forward, for all of your devices."""
    return (await service.read(me, chat_id, body.seq)).to_dict()


@router.get(
    "/chats/{chat_id}/messages/{seq}/receipts",
    response_model=ReceiptsAnswer,
    responses=ERRORS,
    tags=["messages"],
)
async def receipts(
    chat_id: ChatId,
    seq: Annotated[int, Path(ge=1, le=MAX_ID)],
    me: Me,
    service: Service,
) -> dict:
    """Sent, delivered or read, for each other member who can see your message.

    Only the message's sender may ask (403 ``not_sender``)."""
    return await service.receipts(me, chat_id, seq)


@router.get("/events", response_model=EventPage, responses=ERRORS, tags=["messages"])
async def events(
    me: Me,
    service: Service,
    after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> Response:
    """Your log after a cursor, for clients that cannot hold a WebSocket."""
    newest = await service.store.last_cursor(me.user_id)
    if after > newest:
        raise BadRequest(
            "cursor_out_of_range",
            f"Cursor {after} is past the newest event ({newest}); start again from 0.",
        )
    page = await service.store.events_after(me.user_id, after, limit)
    cursor = page[-1].cursor if page else after
    body = b'{"events":[' + b",".join(event.frame() for event in page) + b"]"
    body += b',"cursor":%d}' % cursor
    return Response(body, media_type="application/json")


@router.post("/events/ack", status_code=204, responses=ERRORS, tags=["messages"])
async def ack(body: AckRequest, me: Me, service: Service) -> Response:
    """Acknowledge your log up to a cursor, as a WebSocket ``ack`` does: the
    messages in it become delivered."""
    await service.ack(me, body.cursor)
    return Response(status_code=204)


# -- push --------------------------------------------------------------------


@router.put("/devices/current/push", status_code=204, responses=ERRORS, tags=["push"])
async def register_push(body: PushRequest, me: Me, service: Service) -> Response:
    """Where the device of your token is notified while it has no live connection."""
    await service.register_push(me, body.service, body.token, body.p256dh, body.auth)
    return Response(status_code=204)


@router.delete(
    "/devices/current/push", status_code=204, responses=ERRORS, tags=["push"]
)
async def unregister_push(me: Me, service: Service) -> Response:
    """Stop notifying the device of your token."""
    await service.unregister_push(me)
    return Response(status_code=204)


@router.put("/chats/{chat_id}/mute", status_code=204, responses=ERRORS, tags=["push"])
async def mute(
    chat_id: ChatId, body: MuteRequest, me: Me, service: Service
) -> Response:
    """Mute or unmute a chat: a muted chat sends you no notifications."""
    await service.mute(me, chat_id, body.muted)
    return Response(status_code=204)


# -- images ------------------------------------------------------------------


@router.post(
    "/media",
    response_model=Image,
    status_code=201,
    responses=ERRORS,
    tags=["images"],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {
                    "schema": {"type": "string", "format": "binary"}
                }
            },
        }
    },
)
async def upload_image(request: Request, me: Me, service: Service) -> dict:
    """Upload an image (JPEG, PNG, WebP or GIF, at most 1 MiB) as the raw body."""
    limit = service.settings.max_image_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _image_too_large(int(declared), limit)

    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise _image_too_large(len(data), limit)
    record = await service.upload_image(me, bytes(data))
    return record.to_dict()


@router.get(
    "/media/{media_id}",
    responses={**ERRORS, 200: {"content": {"image/*": {}}}},
    response_class=Response,
    tags=["images"],
)
async def download_upload(media_id: MediaId, me: Me, service: Service) -> Response:
    """An image you uploaded."""
    content, content_type = await service.download(
        me, media_id, chat_id=None, thumbnail=False
    )
    return _image_response(content, content_type)


@router.get(
    "/media/{media_id}/thumbnail",
    responses={**ERRORS, 200: {"content": {"image/jpeg": {}}}},
    response_class=Response,
    tags=["images"],
)
async def download_upload_thumbnail(
    media_id: MediaId, me: Me, service: Service
) -> Response:
    """The JPEG preview (at most 320 pixels on its longest side) of an image you
    uploaded."""
    content, content_type = await service.download(
        me, media_id, chat_id=None, thumbnail=True
    )
    return _image_response(content, content_type)


@router.get(
    "/chats/{chat_id}/media/{media_id}",
    responses={**ERRORS, 200: {"content": {"image/*": {}}}},
    response_class=Response,
    tags=["images"],
)
async def download_image(
    chat_id: ChatId, media_id: MediaId, me: Me, service: Service
) -> Response:
    """An image of a message of the chat that you can see."""
    content, content_type = await service.download(
        me, media_id, chat_id=chat_id, thumbnail=False
    )
    return _image_response(content, content_type)


@router.get(
    "/chats/{chat_id}/media/{media_id}/thumbnail",
    responses={**ERRORS, 200: {"content": {"image/jpeg": {}}}},
    response_class=Response,
    tags=["images"],
)
async def download_thumbnail(
    chat_id: ChatId, media_id: MediaId, me: Me, service: Service
) -> Response:
    """The JPEG preview of an image of a message of the chat that you can see."""
    content, content_type = await service.download(
        me, media_id, chat_id=chat_id, thumbnail=True
    )
    return _image_response(content, content_type)


def _image_too_large(size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        "image_too_large", f"An image is at most {limit} bytes; this one is {size}."
    )


def _image_response(content: bytes, content_type: str) -> Response:
    return Response(
        content,
        media_type=content_type,
        headers={
            "Cache-Control": "private, max-age=31536000, immutable",
            "X-Content-Type-Options": "nosniff",
        },
    )


# -- presence ----------------------------------------------------------------


@router.get(
    "/users/{user_id}/presence",
    response_model=PresenceAnswer,
    responses=ERRORS,
    tags=["presence"],
)
async def presence(user_id: str, me: Me, service: Service) -> dict:
    """Online, or offline with the last-seen time; for people you share a chat with."""
    return await service.presence_of(me, user_id)
