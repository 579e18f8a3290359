"""The one tree of refusals that Parley gives to clients.

Every refusal carries an HTTP status, a WebSocket close code (for the few that
end a connection), a stable machine-readable ``code`` and a human sentence::

    ParleyError                      500  internal
    ├── BadRequest                   400  malformed_json, invalid_field, text_*, ...
    ├── Unauthorized                 401  token_missing, token_invalid, token_expired
    ├── Forbidden                    403  not_admin, not_uploader, ...
    ├── NotFound                     404  chat_not_found, media_not_found, ...
    ├── Conflict                     409  already_member, chat_full, ...
    ├── PayloadTooLarge              413  image_too_large, body_too_large
    ├── UnprocessableImage           422  image_unreadable, image_too_many_pixels
    └── Unavailable                  503  storage_unavailable, draining

Third-party errors are translated into this tree where they enter Parley;
their details never reach a client.
"""

from __future__ import annotations


class ParleyError(Exception):
    """A refusal that a client may see: status, stable code and a sentence."""

    status = 500
    close_code = 1011

    def __init__(
        self, code: str = "internal", message: str = "Internal error."
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class BadRequest(ParleyError):
    status = 400
    close_code = 1008


class Unauthorized(ParleyError):
    status = 401
    close_code = 4401


class Forbidden(ParleyError):
    status = 403
    close_code = 4403


class NotFound(ParleyError):
    status = 404


class Conflict(ParleyError):
    status = 409


class PayloadTooLarge(ParleyError):
    status = 413
    close_code = 1009


class UnprocessableImage(ParleyError):
    status = 422


class Unavailable(ParleyError):
    status = 503
    close_code = 1013


def chat_not_found(chat_id: object) -> NotFound:
    """The refusal for a chat that does not exist or that the caller cannot see.

    Both cases look the same, so that nobody learns which chats exist.
    """
    return NotFound("chat_not_found", f"No chat {chat_id} that you are a member of.")
