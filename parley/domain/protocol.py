"""The WebSocket frame protocol: client frames parsed and checked, no I/O.

Every frame is a JSON object with a ``type``. A frame that is not valid JSON,
is too large, or lacks what its type needs is refused with a stable code; the
connection stays open unless the frame could not be read at all.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from parley.errors import BadRequest, PayloadTooLarge

_MAX_REF_CHARACTERS = 64
# Lone surrogates cannot be encoded back to the client; control characters
# have no business in a reference either.
_NOT_TEXT = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")

# Sequences, cursors and ids are signed 64-bit integers in storage.
MAX_INTEGER = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Hello:
    token: str | None
    cursor: int | None


@dataclass(frozen=True, slots=True)
class Send:
    ref: str | None
    chat_id: int
    client_id: object
    text: object
    images: object


@dataclass(frozen=True, slots=True)
class Ack:
    cursor: int


@dataclass(frozen=True, slots=True)
class Read:
    ref: str | None
    chat_id: int
    seq: int


@dataclass(frozen=True, slots=True)
class Ping:
    ref: str | None


ClientFrame = Hello | Send | Ack | Read | Ping


def parse_frame(raw: str | bytes, max_bytes: int) -> ClientFrame:
    """A client frame from its text; raises BadRequest or PayloadTooLarge."""
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > max_bytes:
        raise PayloadTooLarge(
            "frame_too_large", f"A frame is at most {max_bytes} bytes; this is {size}."
        )
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest("malformed_frame", "The frame is not valid JSON.") from None
    if not isinstance(data, dict):
        raise BadRequest("malformed_frame", "A frame is a JSON object.")

    kind = data.get("type")
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise BadRequest("unknown_frame_type", f"Unknown frame type {kind!r:.40}.")
    return parser(data)


def reference(data: dict) -> str | None:
    """The client's ``ref`` that a reply echoes, if it is a short string."""
    ref = data.get("ref")
    if ref is None:
        return None
    if (
        not isinstance(ref, str)
        or len(ref) > _MAX_REF_CHARACTERS
        or _NOT_TEXT.search(ref)
    ):
        raise BadRequest(
            "invalid_field",
            f"Field 'ref' is a string of at most {_MAX_REF_CHARACTERS}.",
        )
    return ref


def _integer(data: dict, field: str, *, optional: bool = False) -> int | None:
    value = data.get(field)
    if value is None and optional:
        return None
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not 0 <= value <= MAX_INTEGER
    ):
        raise BadRequest(
            "invalid_field", f"Field '{field}' must be an integer from 0 to 2^63-1."
        )
    return value


def _hello(data: dict) -> Hello:
    token = data.get("token")
    if token is not None and (not isinstance(token, str) or not token.isascii()):
        raise BadRequest("invalid_field", "Field 'token' must be an ASCII string.")
    return Hello(token, _integer(data, "cursor", optional=True))


def _send(data: dict) -> Send:
    return Send(
        ref=reference(data),
        chat_id=_integer(data, "chat_id"),
        client_id=data.get("client_id"),
        text=data.get("text"),
        images=data.get("images"),
    )


def _ack(data: dict) -> Ack:
    return Ack(_integer(data, "cursor"))


def _read(data: dict) -> Read:
    return Read(reference(data), _integer(data, "chat_id"), _integer(data, "seq"))


def _ping(data: dict) -> Ping:
    return Ping(reference(data))


_PARSERS = {"hello": _hello, "send": _send, "ack": _ack, "read": _read, "ping": _ping}
