"""The SQL store: every named transaction of Parley, on SQLite or PostgreSQL.

Each write transaction checks the rules of ``parley.domain``, changes the
tables, and appends to the log of every user who must hear of the change; the
events it returns are published only after the commit (store first, then
notify). The sequence of a chat and the cursor of a user's log are allocated
by ``UPDATE ... RETURNING`` inside the same transaction, so they have no gaps
and commit in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import orjson
from sqlalchemy import (
    and_,
    case,
    create_engine,
    event,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, RootTransaction
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from parley.domain import reads
from parley.domain.chats import (
    ChatKind,
    Membership,
    Role,
    check_can_manage_members,
    check_group_size,
    next_admin,
    private_chat_key,
)
from parley.domain.messages import Event, EventKind, Message, encode
from parley.domain.push import PushJob
from parley.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    ParleyError,
    Unavailable,
    chat_not_found,
)
from parley.push import PushAddress
from parley.storage import pushes
from parley.storage.schema import (
    chats,
    devices,
    media,
    media_uploads,
    members,
    message_media,
    messages,
    user_chats,
    users,
)
from parley.storage.statements import (
    DriverStatements,
    SqliteStatements,
    Statements,
    placeholders,
)

log = logging.getLogger(__name__)

Clock = Callable[[], int]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ChatView:
    """A chat as one member sees it."""

    chat_id: int
    kind: str
    title: str | None
    admin_id: str | None
    last_seq: int
    member: Membership
    last_message: Message | None
    member_ids: list[str]

    @property
    def unread_count(self) -> int:
        return reads.unread_count(self.member, self.last_seq)

    def to_dict(self) -> dict:
        return {
            "id": self.chat_id,
            "kind": self.kind,
            "title": self.title,
            # A member who left sees the chat as it was, not who is in it now.
            "admin_id": self.admin_id if self.member.active else None,
            "members": self.member_ids if self.member.active else [],
            "last_seq": self.member.visible_last(self.last_seq),
            "read_seq": self.member.read_seq,
            "unread_count": self.unread_count,
            "active": self.member.active,
            "muted": self.member.muted,
            "last_message": self.last_message.preview() if self.last_message else None,
        }


@dataclass(frozen=True, slots=True)
class MediaRecord:
    media_id: str
    content_type: str
    bytes: int
    width: int
    height: int
    frames: int
    thumbnail_bytes: int

    def to_dict(self) -> dict:
        return {
            "id": self.media_id,
            "content_type": self.content_type,
            "bytes": self.bytes,
            "width": self.width,
            "height": self.height,
            "frames": self.frames,
        }


class SqlStore:
    """Named transactions over one SQLAlchemy engine (two for SQLite)."""

    def __init__(
        self,
        url: str,
        clock: Clock,
        *,
        max_group_members: int,
        receipts_max_chat_members: int = 100,
        push_delay_ms: int = 0,
    ) -> None:
        self._url = url
        self._clock = clock
        self._max_group_members = max_group_members
        self._receipts_max_chat_members = receipts_max_chat_members
        self._push_delay_ms = push_delay_ms
        self._is_sqlite = url.startswith("sqlite")
        self._write_lock = asyncio.Lock()
        self._writer: AsyncEngine | None = None
        self._reader: AsyncEngine | None = None
        self._writes = _Batcher(self._store_all)

    # -- life cycle -------------------------------------------------------

    async def open(self) -> None:
        if self._is_sqlite:
            self._writer = _InlineEngine(_sqlite_engine(self._url, "BEGIN IMMEDIATE"))
            self._reader = _InlineEngine(_sqlite_engine(self._url, "BEGIN"))
        else:
            self._writer = create_async_engine(
                self._url, pool_size=10, pool_pre_ping=True, hide_parameters=True
            )
            self._reader = self._writer

    async def close(self) -> None:
        for engine in {self._writer, self._reader}:
            if engine is not None:
                await engine.dispose()

    async def check(self) -> None:
        """Raise Unavailable unless the database answers."""
        async with self._read() as conn:
            await conn.execute(text("SELECT 1"))

    async def _transaction(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``work`` in one write transaction, again if the engine asks.

        PostgreSQL may abort one of two transactions that lock the same rows
        in opposite orders (a deadlock), or that insert the same unique key at
        once; run again, the loser sees the winner's rows. SQLite writes one
        transaction at a time, behind a lock.
        """
        assert self._writer is not None
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                lock = self._write_lock if self._is_sqlite else _no_lock()
                async with lock, _translated_errors(), self._writer.begin() as conn:
                    return await work(conn)
            except DBAPIError as error:
                if attempt == _ATTEMPTS or not _worth_retrying(error):
                    raise _unavailable(error) from None
                log.info("transaction retried: %s", _sqlstate(error))
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _store_all(self, writes: list[_Write]) -> list[object | ParleyError]:
        """Store a batch in one transaction; a refused write gets its refusal
        and the others go on.

        Each write checks everything before its first change, so a refusal
        leaves nothing to undo and needs no savepoint of its own.
        """

        async def transaction(conn: AsyncConnection):
            outcomes: list[object | ParleyError] = []
            for write in writes:
                try:
                    outcomes.append(await write(conn))
                except ParleyError as refusal:
                    outcomes.append(refusal)
            return outcomes

        return await self._transaction(transaction)

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        assert self._reader is not None
        async with _translated_errors(), self._reader.connect() as conn:
            yield conn

    # -- devices and the event log ----------------------------------------

    async def connect_device(self, user_id: str, device_id: str) -> int:
        """Record the device and return the cursor it last acknowledged.

        Devices reconnect in crowds (after a node restarts): their records
        share commits with sends and acknowledgements.
        """
        return await self._writes.submit(
            partial(self._store_connect, user_id=user_id, device_id=device_id)
        )

    async def _store_connect(
        self, conn: AsyncConnection, *, user_id: str, device_id: str
    ) -> int:
        now = self._clock()
        sql = _sql(conn)
        await sql.run(_INSERT_USER, (user_id,))
        await sql.run(_INSERT_DEVICE, (user_id, device_id, now, now))
        row = await sql.row(_DEVICE_ACKED, (user_id, device_id))
        return int(row[0]) if row else 0

    async def record_last_seen(self, user_id: str, device_id: str | None) -> int:
        """The user (and the device, if known) was last seen now; returns when.

        Devices leave in crowds too (a node drained): these share commits.
        """
        return await self._writes.submit(
            partial(self._store_last_seen, user_id=user_id, device_id=device_id)
        )

    async def _store_last_seen(
        self, conn: AsyncConnection, *, user_id: str, device_id: str | None
    ) -> int:
        now = self._clock()
        sql = _sql(conn)
        await sql.run(_USER_LAST_SEEN, (now, user_id))
        if device_id is not None:
            await sql.run(_DEVICE_LAST_SEEN, (now, user_id, device_id))
        return now

    async def last_seen(self, user_id: str) -> int | None:
        async with self._read() as conn:
            return await conn.scalar(
                select(users.c.last_seen_at_ms).where(users.c.user_id == user_id)
            )

    async def last_cursor(self, user_id: str) -> int:
        async with self._read() as conn:
            row = await _sql(conn).row(_LAST_CURSOR, (user_id,))
        return int(row[0]) if row else 0

    async def last_cursors(self, user_ids: list[str]) -> dict[str, int]:
        """The newest cursor of each user's log."""
        if not user_ids:
            return {}
        async with self._read() as conn:
            rows = await _sql(conn).rows(
                _LAST_CURSORS % placeholders(len(user_ids)), user_ids
            )
        return {user_id: int(cursor) for user_id, cursor in rows}

    async def events_after(self, user_id: str, cursor: int, limit: int) -> list[Event]:
        """The user's events after ``cursor``, oldest first."""
        async with self._read() as conn:
            rows = await _sql(conn).rows(_EVENTS_AFTER, (user_id, cursor, limit))
        return [Event(user_id, cursor, kind, body) for cursor, kind, body in rows]

    async def ack(self, user_id: str, device_id: str, cursor: int) -> list[Event]:
        """A device has everything up to ``cursor``: record delivery receipts.

        Acknowledgements arrive as often as messages; like sends, those that
        queue during a commit share the next one.
        """
        return await self._writes.submit(
            partial(
                self._store_ack, user_id=user_id, device_id=device_id, cursor=cursor
            )
        )

    async def _store_ack(
        self, conn: AsyncConnection, *, user_id: str, device_id: str, cursor: int
    ) -> list[Event]:
        sql = _sql(conn)
        row = await sql.row(_USER_CURSORS, (user_id,))
        last_cursor, delivered_cursor = row if row is not None else (0, 0)
        if cursor > last_cursor:
            raise BadRequest(
                "cursor_out_of_range",
                f"Cursor {cursor} is past the newest event ({last_cursor}).",
            )

        await sql.run(_DEVICE_ACK, (cursor, user_id, device_id, cursor))
        if cursor <= delivered_cursor:
            return []

        await sql.run(_USER_DELIVERED, (cursor, user_id))
        return await self._deliver_up_to(conn, user_id, delivered_cursor, cursor)

    async def _deliver_up_to(
        self, conn: AsyncConnection, user_id: str, after: int, up_to: int
    ) -> list[Event]:
        sql = _sql(conn)
        newest_by_chat = await sql.rows(
            _NEWEST_DELIVERED_BY_CHAT,
            (user_id, after, up_to, EventKind.MESSAGE, user_id),
        )
        receipts: list[Event] = []
        for chat_id, seq in newest_by_chat:
            member = await sql.row(_MEMBER_POSITIONS, (chat_id, user_id))
            if member is None or seq <= member[1]:
                continue
            read_seq, delivered_seq = member
            await sql.run(_MEMBER_DELIVERED, (seq, chat_id, user_id))
            receipts += await self._receipts_to_senders(
                conn, chat_id, user_id, delivered_seq, seq, read_seq, seq
            )
        return receipts

    async def _receipts_to_senders(
        self,
        conn: AsyncConnection,
        chat_id: int,
        recipient_id: str,
        after: int,
        up_to: int,
        read_seq: int,
        delivered_seq: int,
    ) -> list[Event]:
        """Tell the senders of (after, up_to] what ``recipient_id`` has now.

        Not in a chat of more than ``receipts_max_chat_members``: there every
        member's acknowledgement would send each sender a receipt, a thousand
        per message in a group of a thousand. The positions are stored all
        the same, and the message's receipts can be asked for.
        """
        sql = _sql(conn)
        (members,) = await sql.row(
            _ACTIVE_MEMBERS_UP_TO, (chat_id, self._receipts_max_chat_members + 1)
        )
        if members > self._receipts_max_chat_members:
            return []

        senders = await sql.rows(
            _SENDERS_BETWEEN, (chat_id, after, up_to, recipient_id)
        )
        body = encode(
            {
                "chat_id": chat_id,
                "user_id": recipient_id,
                "delivered_seq": delivered_seq,
                "read_seq": read_seq,
            }
        )
        return await self._append(
            conn,
            sorted(sender for (sender,) in senders),
            EventKind.RECEIPT,
            chat_id,
            body,
        )

    async def _append(
        self,
        conn: AsyncConnection,
        user_ids: list[str],
        kind: str,
        chat_id: int,
        body: bytes,
        *,
        message_seq: int | None = None,
        sender_id: str | None = None,
        sent_at_ms: int | None = None,
    ) -> list[Event]:
        """Append one fact to the logs of ``user_ids``; return their events.

        Every user given has a row in ``users``: members get one when they
        join (``_insert_members``), devices when they connect.
        """
        if not user_ids:
            return []

        sql = _sql(conn)
        cursors = await sql.rows(
            _NEXT_CURSORS % placeholders(len(user_ids)), list(user_ids)
        )
        now = self._clock()
        await sql.run_many(
            _INSERT_EVENT,
            [
                (user_id, cursor, kind, chat_id, message_seq, sender_id, body, now)
                for user_id, cursor in cursors
            ],
        )
        return [
            Event(user_id, cursor, kind, body, sent_at_ms)
            for user_id, cursor in cursors
        ]

    # -- chats ------------------------------------------------------------

    async def open_private_chat(
        self, user_id: str, other_id: str
    ) -> tuple[ChatView, list[Event]]:
        """The private chat of two users, created on first asking."""
        key = private_chat_key(user_id, other_id)

        async def transaction(conn: AsyncConnection):
            chat_id = await conn.scalar(
                select(chats.c.id).where(chats.c.private_key == key)
            )
            appended: list[Event] = []
            if chat_id is None:
                chat_id = await self._insert_chat(
                    conn, ChatKind.PRIVATE, None, None, key
                )
                await self._insert_members(
                    conn, chat_id, [user_id, other_id], Role.MEMBER
                )
                appended = await self._announce_created(conn, chat_id, user_id)
            view = await _chat_view(conn, chat_id, user_id)
            assert view is not None
            return view, appended

        return await self._transaction(transaction)

    async def create_group(
        self, creator_id: str, title: str, member_ids: list[str]
    ) -> tuple[ChatView, list[Event]]:
        others = sorted(set(member_ids) - {creator_id})
        check_group_size(len(others) + 1, self._max_group_members)

        async def transaction(conn: AsyncConnection):
            chat_id = await self._insert_chat(
                conn, ChatKind.GROUP, title, creator_id, None
            )
            await self._insert_members(conn, chat_id, [creator_id], Role.ADMIN)
            await self._insert_members(conn, chat_id, others, Role.MEMBER)
            appended = await self._announce_created(conn, chat_id, creator_id)
            view = await _chat_view(conn, chat_id, creator_id)
            assert view is not None
            return view, appended

        return await self._transaction(transaction)

    async def add_member(
        self, actor_id: str, chat_id: int, user_id: str
    ) -> tuple[ChatView, list[Event]]:
        async def transaction(conn: AsyncConnection):
            kind, actor = await _acting_member(conn, chat_id, actor_id)
            check_can_manage_members(kind, actor)

            existing = await _membership(conn, chat_id, user_id)
            if existing is not None and existing.active:
                raise Conflict("already_member", f"{user_id} is already a member.")
            active = await _active_member_ids(conn, chat_id)
            check_group_size(len(active) + 1, self._max_group_members)

            # Known shortcoming: a member added again sees only what comes
            # after; the window of the earlier membership is forgotten. A row
            # per window (not per member) would keep both.
            if existing is not None:
                await conn.execute(
                    members.delete().where(
                        members.c.chat_id == chat_id, members.c.user_id == user_id
                    )
                )
            await self._insert_members(conn, chat_id, [user_id], Role.MEMBER)
            appended = await self._announce_members(
                conn, chat_id, [user_id], "added", actor_id
            )
            view = await _chat_view(conn, chat_id, actor_id)
            assert view is not None
            return view, appended

        return await self._transaction(transaction)

    async def remove_member(
        self, actor_id: str, chat_id: int, user_id: str
    ) -> list[Event]:
        """The admin removes a member, or a member leaves (actor is the user)."""

        async def transaction(conn: AsyncConnection):
            kind, actor = await _acting_member(conn, chat_id, actor_id)
            if actor_id != user_id:
                check_can_manage_members(kind, actor)
            elif kind == ChatKind.PRIVATE:
                raise Forbidden("private_chat", "A private chat cannot be left.")

            target = await _membership(conn, chat_id, user_id)
            if target is None or not target.active:
                raise BadRequest(
                    "not_member", f"{user_id} is not a member of this chat."
                )

            last_seq = await conn.scalar(
                select(chats.c.last_seq).where(chats.c.id == chat_id)
            )
            await conn.execute(
                update(members)
                .where(members.c.chat_id == chat_id, members.c.user_id == user_id)
                .values(left_at=last_seq, role=Role.MEMBER.value)
            )
            change = "left" if actor_id == user_id else "removed"
            appended = await self._announce_members(
                conn, chat_id, [user_id], change, actor_id
            )
            if target.role is Role.ADMIN:
                appended += await self._hand_over_admin(conn, chat_id, user_id)
            return appended

        return await self._transaction(transaction)

    async def _hand_over_admin(
        self, conn: AsyncConnection, chat_id: int, departed_id: str
    ) -> list[Event]:
        remaining = await _memberships(conn, chat_id)
        successor = next_admin(remaining)
        admin_id = successor.user_id if successor else None
        await conn.execute(
            update(chats).where(chats.c.id == chat_id).values(admin_id=admin_id)
        )
        if successor is None:
            return []
        await conn.execute(
            update(members)
            .where(members.c.chat_id == chat_id, members.c.user_id == admin_id)
            .values(role=Role.ADMIN.value)
        )
        return await self._announce_members(
            conn, chat_id, [admin_id], "admin", departed_id
        )

    async def _insert_chat(
        self,
        conn: AsyncConnection,
        kind: ChatKind,
        title: str | None,
        admin_id: str | None,
        private_key: str | None,
    ) -> int:
        result = await conn.execute(
            chats.insert()
            .values(
                kind=kind.value,
                title=title,
                admin_id=admin_id,
                private_key=private_key,
                last_seq=0,
                created_at_ms=self._clock(),
            )
            .returning(chats.c.id)
        )
        return int(result.scalar_one())

    async def _insert_members(
        self, conn: AsyncConnection, chat_id: int, user_ids: list[str], role: Role
    ) -> None:
        if not user_ids:
            return
        await _ensure_users(conn, user_ids, self._is_sqlite)
        last_seq = await conn.scalar(
            select(chats.c.last_seq).where(chats.c.id == chat_id)
        )
        now = self._clock()
        await conn.execute(
            members.insert(),
            [
                {
                    "chat_id": chat_id,
                    "user_id": user_id,
                    "role": role.value,
                    "joined_after": last_seq,
                    "left_at": None,
                    "read_seq": last_seq,
                    "delivered_seq": last_seq,
                    "joined_at_ms": now,
                }
                for user_id in user_ids
            ],
        )
        await conn.execute(
            _insert_ignore(user_chats, self._is_sqlite),
            [
                {"user_id": user_id, "chat_id": chat_id, "joined_at_ms": now}
                for user_id in user_ids
            ],
        )

    async def _announce_created(
        self, conn: AsyncConnection, chat_id: int, by: str
    ) -> list[Event]:
        """Tell every member of a new chat, once each, who is in it."""
        member_ids = sorted(await _active_member_ids(conn, chat_id))
        chat = (await conn.execute(select(chats).where(chats.c.id == chat_id))).one()
        body = encode(
            {
                "chat_id": chat_id,
                "change": "created",
                "by": by,
                "members": member_ids,
                "chat_kind": chat.kind,
                "title": chat.title,
                "admin_id": chat.admin_id,
            }
        )
        return await self._append(conn, member_ids, EventKind.MEMBER, chat_id, body)

    async def _announce_members(
        self,
        conn: AsyncConnection,
        chat_id: int,
        changed: list[str],
        change: str,
        by: str,
    ) -> list[Event]:
        """Tell the active members and the changed users of a membership change."""
        audience = sorted(set(await _active_member_ids(conn, chat_id)) | set(changed))
        chat = (await conn.execute(select(chats).where(chats.c.id == chat_id))).one()
        appended: list[Event] = []
        for user_id in changed:
            body = encode(
                {
                    "chat_id": chat_id,
                    "user_id": user_id,
                    "change": change,
                    "by": by,
                    "chat_kind": chat.kind,
                    "title": chat.title,
                    "admin_id": chat.admin_id,
                }
            )
            appended += await self._append(
                conn, audience, EventKind.MEMBER, chat_id, body
            )
        return appended

    async def chat(self, user_id: str, chat_id: int) -> ChatView:
        async with self._read() as conn:
            view = await _chat_view(conn, chat_id, user_id)
        if view is None:
            raise chat_not_found(chat_id)
        return view

    async def chats(self, user_id: str, limit: int, offset: int = 0) -> list[ChatView]:
        """A page of the user's chats, most recent activity first, in two reads."""
        visible_last = case(
            (
                or_(members.c.left_at.is_(None), chats.c.last_seq <= members.c.left_at),
                chats.c.last_seq,
            ),
            else_=members.c.left_at,
        )
        last = messages.alias("last_message")
        activity = func.coalesce(last.c.sent_at_ms, members.c.joined_at_ms)
        query = (
            select(chats, *_MEMBER_COLUMNS, *_last_message_columns(last))
            .select_from(
                user_chats.join(chats, chats.c.id == user_chats.c.chat_id)
                .join(
                    members,
                    and_(
                        members.c.chat_id == user_chats.c.chat_id,
                        members.c.user_id == user_chats.c.user_id,
                    ),
                )
                .outerjoin(
                    last,
                    and_(
                        last.c.chat_id == chats.c.id,
                        last.c.seq == visible_last,
                        last.c.seq > members.c.joined_after,
                    ),
                )
            )
            .where(user_chats.c.user_id == user_id)
            .order_by(activity.desc(), chats.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
            member_ids = await _active_member_ids_of(conn, [row.id for row in rows])
        return [_listed_chat_view(row, member_ids.get(row.id, [])) for row in rows]

    # -- messages ---------------------------------------------------------

    async def send(
        self,
        sender_id: str,
        chat_id: int,
        client_id: str,
        text_: str | None,
        media_ids: list[str],
    ) -> tuple[Message, bool, list[Event]]:
        """Store a message; a known client id gives back the stored one.

        Sends that arrive while a commit is under way are stored together in
        the next transaction: one commit (and one fsync) for many messages,
        and each answered only after it.
        """
        return await self._writes.submit(
            partial(
                self._store_message,
                sender_id=sender_id,
                chat_id=chat_id,
                client_id=client_id,
                text_=text_,
                media_ids=media_ids,
            )
        )

    async def _store_message(
        self,
        conn: AsyncConnection,
        *,
        sender_id: str,
        chat_id: int,
        client_id: str,
        text_: str | None,
        media_ids: list[str],
    ) -> tuple[Message, bool, list[Event]]:
        sql = _sql(conn)
        active = await sql.rows(_ACTIVE_MEMBERS, (chat_id,))
        recipients = [user_id for user_id, _, _ in active]
        if sender_id not in recipients:
            raise chat_not_found(chat_id)

        stored = await sql.row(_MESSAGE_BY_CLIENT_ID, (chat_id, sender_id, client_id))
        if stored is not None:
            return _message_of(stored), False, []

        images = await self._uploaded_images(conn, sender_id, media_ids)
        (seq,) = await sql.row(_NEXT_SEQ, (chat_id,))
        message = Message(
            chat_id,
            int(seq),
            sender_id,
            client_id,
            text_,
            images,
            self._clock(),
        )
        await self._insert_message(sql, message, media_ids)
        pushable = {user_id for user_id, _, pushable in active if pushable}
        notify = [
            user_id
            for user_id, muted, pushable in active
            if pushable and not muted and user_id != sender_id
        ]
        appended = await self._fan_out_message(
            conn, message, recipients, notify, withdraw=sender_id in pushable
        )
        return message, True, appended

    async def _uploaded_images(
        self, conn: AsyncConnection, sender_id: str, media_ids: list[str]
    ) -> list[dict]:
        if not media_ids:
            return []
        rows = await conn.execute(
            select(media)
            .join(media_uploads, media_uploads.c.media_id == media.c.id)
            .where(media_uploads.c.uploader_id == sender_id, media.c.id.in_(media_ids))
        )
        found = {row.id: _media_record(row).to_dict() for row in rows}
        missing = [media_id for media_id in media_ids if media_id not in found]
        if missing:
            raise BadRequest(
                "unknown_image",
                f"Image {missing[0]} was not uploaded by you; upload it first.",
            )
        return [found[media_id] for media_id in media_ids]

    async def _insert_message(
        self, sql: Statements, message: Message, media_ids: list[str]
    ) -> None:
        images = orjson.dumps(message.images).decode() if message.images else None
        await sql.run(
            _INSERT_MESSAGE,
            (
                message.chat_id,
                message.seq,
                message.sender_id,
                message.client_id,
                message.text,
                images,
                message.sent_at_ms,
            ),
        )
        if media_ids:
            await sql.run_many(
                _INSERT_MESSAGE_MEDIA,
                [
                    (message.chat_id, message.seq, position, media_id)
                    for position, media_id in enumerate(media_ids)
                ],
            )

    async def _fan_out_message(
        self,
        conn: AsyncConnection,
        message: Message,
        recipients: list[str],
        notify: list[str],
        *,
        withdraw: bool,
    ) -> list[Event]:
        """Log the message for every member (``recipients``, the sender among
        them), owe a push to the devices of ``notify``, and, if the sender has
        a device push reaches (``withdraw``), take back what it shows."""
        sender_id = message.sender_id
        sql = _sql(conn)

        # Sending reads the chat up to the message for its sender. The
        # message event itself says so to every member: no read event, no
        # receipt (docs/api.md, "A message is also a read receipt").
        await sql.run(
            _MEMBER_READ, (message.seq, message.seq, message.chat_id, sender_id)
        )
        appended = await self._append(
            conn,
            recipients,
            EventKind.MESSAGE,
            message.chat_id,
            encode({"message": message.to_dict()}),
            message_seq=message.seq,
            sender_id=message.sender_id,
            sent_at_ms=message.sent_at_ms,
        )

        # The durable promise of a push goes in with the message itself.
        now = self._clock()
        await pushes.queue_notifications(
            sql,
            chat_id=message.chat_id,
            seq=message.seq,
            recipients=notify,
            now_ms=now,
            delay_ms=self._push_delay_ms,
        )
        if withdraw:
            await pushes.queue_withdrawals(
                sql,
                user_id=sender_id,
                chat_id=message.chat_id,
                read_seq=message.seq,
                now_ms=now,
            )
        return appended

    async def history(
        self,
        user_id: str,
        chat_id: int,
        *,
        before: int | None,
        after: int | None,
        limit: int,
    ) -> list[Message]:
        """A page of the messages the member may see, in sequence order."""
        async with self._read() as conn:
            member = await _membership(conn, chat_id, user_id)
            if member is None:
                raise chat_not_found(chat_id)

            # The member's window, then the page asked for within it.
            low = member.joined_after
            high = _NO_SEQ if member.left_at is None else member.left_at + 1
            if after is not None:
                rows = await _sql(conn).rows(
                    _PAGE_AFTER, (chat_id, max(low, after), high, limit)
                )
            else:
                if before is not None:
                    high = min(high, before)
                rows = await _sql(conn).rows(_PAGE_BEFORE, (chat_id, low, high, limit))

        page = [_message_of(row) for row in rows]
        page.sort(key=lambda message: message.seq)
        return page

    async def read(
        self, user_id: str, chat_id: int, seq: object
    ) -> tuple[Membership, int, list[Event]]:
        """Move the member's read position forward; tell devices and senders."""

        async def transaction(conn: AsyncConnection):
            sql = _sql(conn)
            member = await _membership(conn, chat_id, user_id)
            if member is None:
                raise chat_not_found(chat_id)
            (last_seq,) = await sql.row(_LAST_SEQ, (chat_id,))
            target = reads.check_read_target(member, seq, last_seq)

            read_seq = reads.advance(member.read_seq, target)
            if read_seq == member.read_seq:
                return member, last_seq, []

            delivered_seq = reads.advance(member.delivered_seq, read_seq)
            await sql.run(_MEMBER_READ, (read_seq, delivered_seq, chat_id, user_id))
            moved = _replace(member, read_seq=read_seq, delivered_seq=delivered_seq)
            await pushes.queue_withdrawals(
                sql,
                user_id=user_id,
                chat_id=chat_id,
                read_seq=read_seq,
                now_ms=self._clock(),
            )
            appended = await self._append(
                conn,
                [user_id],
                EventKind.READ,
                chat_id,
                encode(
                    {
                        "chat_id": chat_id,
                        "read_seq": read_seq,
                        "unread_count": reads.unread_count(moved, last_seq),
                    }
                ),
            )
            appended += await self._receipts_to_senders(
                conn,
                chat_id,
                user_id,
                member.read_seq,
                read_seq,
                read_seq,
                delivered_seq,
            )
            return moved, last_seq, appended

        return await self._transaction(transaction)

    async def receipts(
        self, user_id: str, chat_id: int, seq: int
    ) -> tuple[Message, list]:
        """Sent, delivered or read, for every other member who can see ``seq``."""
        async with self._read() as conn:
            member = await _membership(conn, chat_id, user_id)
            if member is None or not member.active or not member.sees(seq):
                raise chat_not_found(chat_id)
            row = (
                await conn.execute(
                    select(messages).where(
                        messages.c.chat_id == chat_id, messages.c.seq == seq
                    )
                )
            ).one_or_none()
            if row is None:
                raise chat_not_found(chat_id)
            message = _message(row)
            reads.check_receipts_viewer(message.sender_id, user_id)
            others = [
                other
                for other in await _memberships(conn, chat_id)
                if other.user_id != message.sender_id and other.sees(seq)
            ]
        return message, [
            {
                "user_id": other.user_id,
                "state": reads.receipt_state(seq, other.delivered_seq, other.read_seq),
            }
            for other in others
        ]

    # -- media ------------------------------------------------------------

    async def record_media(self, uploader_id: str, record: MediaRecord) -> None:
        now = self._clock()

        async def transaction(conn: AsyncConnection):
            await conn.execute(
                _insert_ignore(media, self._is_sqlite).values(
                    id=record.media_id,
                    content_type=record.content_type,
                    bytes=record.bytes,
                    width=record.width,
                    height=record.height,
                    frames=record.frames,
                    thumbnail_bytes=record.thumbnail_bytes,
                    created_at_ms=now,
                )
            )
            await conn.execute(
                _insert_ignore(media_uploads, self._is_sqlite).values(
                    uploader_id=uploader_id,
                    media_id=record.media_id,
                    uploaded_at_ms=now,
                )
            )

        return await self._transaction(transaction)

    async def media_for(
        self, user_id: str, media_id: str, chat_id: int | None
    ) -> MediaRecord | None:
        """The image, if the user uploaded it, or if ``chat_id`` names a chat
        where the user can see a message that holds it."""
        async with self._read() as conn:
            row = (
                await conn.execute(select(media).where(media.c.id == media_id))
            ).one_or_none()
            if row is None:
                return None
            if chat_id is None:
                allowed = await _uploaded_by(conn, user_id, media_id)
            else:
                allowed = await _visible_in_chat(conn, user_id, media_id, chat_id)
        return _media_record(row) if allowed else None

    # -- push -------------------------------------------------------------

    async def set_push_address(
        self, user_id: str, device_id: str, address: PushAddress | None
    ) -> None:
        """Where the device is reached while offline; None stops pushes to it."""
        values = {
            "push_service": address.service if address else None,
            "push_token": address.token if address else None,
            "push_p256dh": address.p256dh if address else None,
            "push_auth": address.auth if address else None,
        }

        async def transaction(conn: AsyncConnection):
            await _ensure_users(conn, [user_id], self._is_sqlite)
            now = self._clock()
            await conn.execute(
                _insert_ignore(devices, self._is_sqlite).values(
                    user_id=user_id,
                    device_id=device_id,
                    acked_cursor=0,
                    first_seen_at_ms=now,
                    last_seen_at_ms=now,
                )
            )
            if address is not None:
                # A token reaches one app install: whoever registered it
                # before (another account, an earlier install) loses it, and
                # what it was still owed.
                holders = await conn.execute(
                    select(devices.c.user_id, devices.c.device_id).where(
                        devices.c.push_token == address.token,
                        ~and_(
                            devices.c.user_id == user_id,
                            devices.c.device_id == device_id,
                        ),
                    )
                )
                for holder in holders.all():
                    await pushes.forget_device(conn, *holder)
            await conn.execute(
                update(devices)
                .where(devices.c.user_id == user_id, devices.c.device_id == device_id)
                .values(**values)
            )
            if address is None:
                await pushes.forget_device(conn, user_id, device_id)

        await self._transaction(transaction)

    async def set_muted(self, user_id: str, chat_id: int, muted: bool) -> None:
        async def transaction(conn: AsyncConnection):
            member = await _membership(conn, chat_id, user_id)
            if member is None or not member.active:
                raise chat_not_found(chat_id)
            await conn.execute(
                update(members)
                .where(members.c.chat_id == chat_id, members.c.user_id == user_id)
                .values(muted=muted)
            )

        await self._transaction(transaction)

    async def claim_pushes(self, limit: int, lease_ms: int) -> list[PushJob]:
        async def transaction(conn: AsyncConnection):
            return await pushes.claim(
                conn, now_ms=self._clock(), lease_ms=lease_ms, limit=limit
            )

        return await self._transaction(transaction)

    async def finish_push(self, job: PushJob, *, delivered: bool) -> None:
        async def transaction(conn: AsyncConnection):
            await pushes.finish(
                conn, job, delivered=delivered, is_sqlite=self._is_sqlite
            )

        await self._transaction(transaction)

    async def retry_push(self, job: PushJob, due_at_ms: int) -> None:
        async def transaction(conn: AsyncConnection):
            await pushes.retry(conn, job, due_at_ms=due_at_ms)

        await self._transaction(transaction)

    async def forget_push_address(self, job: PushJob) -> None:
        async def transaction(conn: AsyncConnection):
            await pushes.forget_address(conn, job)

        await self._transaction(transaction)

    # -- presence ---------------------------------------------------------

    async def contacts(self, user_id: str, max_chat_members: int = 64) -> list[str]:
        """The users who share an active chat of at most ``max_chat_members``
        with ``user_id``: in a large group, presence is not announced to all,
        or a thousand members coming online would make a million frames."""
        async with self._read() as conn:
            rows = await _sql(conn).rows(
                _CONTACTS, (user_id, max_chat_members, user_id)
            )
        return [contact for (contact,) in rows]


# -- helpers shared by the transactions -------------------------------------


# A write the batch runs on its transaction's connection.
_Write = Callable[[AsyncConnection], Awaitable[object]]


_MAX_BATCH = 256


class _Batcher:
    """Runs requests in batches: those that queue while one batch commits
    form the next. Each caller gets its own outcome, or the batch's error."""

    def __init__(self, run: Callable[[list], Awaitable[list]]) -> None:
        self._run = run
        self._queue: list[tuple[object, asyncio.Future]] = []
        self._draining = False

    async def submit(self, request: object):  # noqa: ANN201
        outcome = asyncio.get_running_loop().create_future()
        self._queue.append((request, outcome))
        if not self._draining:
            self._draining = True
            asyncio.create_task(self._drain())
        result = await outcome
        if isinstance(result, ParleyError):
            raise result
        return result

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._queue[:_MAX_BATCH]
                del self._queue[:_MAX_BATCH]
                await self._run_batch(batch)
        finally:
            self._draining = False

    async def _run_batch(self, batch: list[tuple[object, asyncio.Future]]) -> None:
        try:
            results = await self._run([request for request, _ in batch])
        except Exception as error:  # noqa: BLE001 - handed to every caller
            for _, outcome in batch:
                if not outcome.done():
                    outcome.set_exception(error)
            return
        for (_, outcome), result in zip(batch, results, strict=True):
            if not outcome.done():
                outcome.set_result(result)


class _InlineConnection:
    """A SQLite connection used on the event loop's own thread.

    A statement on a local SQLite file takes microseconds; handing each one
    to a driver thread and back (as an async driver does, several times per
    statement) costs ten times more than running it. SQLite has one writer,
    and a transaction here never waits on anything but SQLite, so running it
    inline blocks the loop for less than the hops would have.
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.statements = SqliteStatements(connection.connection.driver_connection)

    async def execute(self, statement, parameters=None):  # noqa: ANN001, ANN201
        return self._connection.execute(statement, parameters)

    async def scalar(self, statement, parameters=None):  # noqa: ANN001, ANN201
        return self._connection.scalar(statement, parameters)

    async def scalars(self, statement, parameters=None):  # noqa: ANN001, ANN201
        return self._connection.scalars(statement, parameters)

    async def run_sync(self, function):  # noqa: ANN001, ANN201
        return function(self._connection)

    @asynccontextmanager
    async def begin_nested(self) -> AsyncIterator[None]:
        with self._connection.begin_nested():
            yield


class _InlineEngine:
    """The few engine calls the store makes, over a synchronous SQLite engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._reading: Connection | None = None

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[_InlineConnection]:
        """A write transaction. Taking the write lock (which may wait for
        another process's write) and the commit (which waits for the disk)
        run in a worker thread, so the event loop serves devices meanwhile;
        the statements between them run inline."""
        opening = asyncio.ensure_future(asyncio.to_thread(_begin, self._engine))
        try:
            connection, transaction = await asyncio.shield(opening)
        except asyncio.CancelledError:
            await _outlast(opening)
            if not opening.cancelled() and opening.exception() is None:
                connection, transaction = opening.result()
                with connection:
                    transaction.rollback()
            raise
        try:
            yield _InlineConnection(connection)
        except BaseException:
            with connection:
                transaction.rollback()
            raise

        commit = asyncio.ensure_future(
            asyncio.to_thread(_commit, transaction, connection)
        )
        try:
            await asyncio.shield(commit)
        except asyncio.CancelledError:
            # The caller holds the write lock: it lets go only once the
            # commit has ended and the connection is back in the pool.
            await _outlast(commit)
            raise

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[_InlineConnection]:
        """A read, on one connection kept open from read to read: checking a
        connection out of the pool costs more than most reads."""
        if self._reading is None:
            self._reading = self._engine.connect()
        try:
            yield _InlineConnection(self._reading)
        finally:
            # Ends the snapshot of a read that began a transaction.
            self._reading.rollback()

    async def dispose(self) -> None:
        if self._reading is not None:
            self._reading.close()
            self._reading = None
        self._engine.dispose()


async def _outlast(task: asyncio.Future) -> None:
    """Wait for ``task`` to end, through any number of cancellations."""
    while not task.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({task})
    if not task.cancelled() and task.exception() is not None:
        log.warning("storage work of a cancelled request failed: %s", task.exception())


def _begin(engine: Engine) -> tuple[Connection, RootTransaction]:
    connection = engine.connect()
    try:
        return connection, connection.begin()
    except BaseException:
        connection.close()
        raise


def _commit(transaction: RootTransaction, connection: Connection) -> None:
    with connection:
        transaction.commit()


def _sqlite_engine(url: str, begin: str) -> Engine:
    engine = create_engine(
        url.replace("+aiosqlite", "+pysqlite", 1),
        pool_size=1,
        max_overflow=0,
        connect_args={"timeout": 5},
        hide_parameters=True,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # noqa: ANN001
        # Let SQLAlchemy, not the driver, decide where transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # Wait for another process's write first, even to set the journal.
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # noqa: ANN001
        conn.connection.driver_connection.execute(begin)

    return engine


@asynccontextmanager
async def _no_lock() -> AsyncIterator[None]:
    yield


@asynccontextmanager
async def _translated_errors() -> AsyncIterator[None]:
    """Turn a database that cannot answer into a refusal a client understands.

    Errors worth retrying pass through to ``SqlStore._transaction``.
    """
    try:
        yield
    except DBAPIError as error:
        if _worth_retrying(error):
            raise
        raise _unavailable(error) from None
    except (sqlite3.Error, OSError) as error:
        raise _unavailable(error) from None


# Deadlock, serialization failure, unique violation: a concurrent writer won.
_RETRY_SQLSTATES = frozenset({"40P01", "40001", "23505"})
_ATTEMPTS = 5


def _sqlstate(error: DBAPIError) -> str | None:
    original = error.orig
    return getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)


def _worth_retrying(error: DBAPIError) -> bool:
    return _sqlstate(error) in _RETRY_SQLSTATES


def _unavailable(error: BaseException) -> Unavailable:
    log.error("storage unavailable: %s", type(error).__name__, exc_info=error)
    return Unavailable(
        "storage_unavailable", "Storage is unavailable; nothing was changed."
    )


def _insert_ignore(table, is_sqlite: bool):  # noqa: ANN001, ANN202
    dialect = sqlite if is_sqlite else postgresql
    return dialect.insert(table).on_conflict_do_nothing()


async def _ensure_users(
    conn: AsyncConnection, user_ids: list[str], is_sqlite: bool
) -> None:
    await conn.execute(
        _insert_ignore(users, is_sqlite),
        [
            {"user_id": user_id, "last_cursor": 0, "delivered_cursor": 0}
            for user_id in user_ids
        ],
    )


def _membership_from(row, prefix: str = "") -> Membership:  # noqa: ANN001
    """A membership from a row of ``members``, its columns named ``prefix``+name."""
    mapping = row._mapping
    return Membership(
        chat_id=mapping[prefix + "chat_id"],
        user_id=mapping[prefix + "user_id"],
        role=Role(mapping[prefix + "role"]),
        joined_after=mapping[prefix + "joined_after"],
        left_at=mapping[prefix + "left_at"],
        read_seq=mapping[prefix + "read_seq"],
        delivered_seq=mapping[prefix + "delivered_seq"],
        muted=bool(mapping[prefix + "muted"]),
    )


def _replace(member: Membership, **changes: int) -> Membership:
    values = {field: getattr(member, field) for field in Membership.__slots__}
    values.update(changes)
    return Membership(**values)


async def _membership(
    conn: AsyncConnection, chat_id: int, user_id: str
) -> Membership | None:
    row = await _sql(conn).row(_MEMBER, (chat_id, user_id))
    if row is None:
        return None
    role, joined_after, left_at, read_seq, delivered_seq, muted = row
    return Membership(
        chat_id,
        user_id,
        Role(role),
        joined_after,
        left_at,
        read_seq,
        delivered_seq,
        bool(muted),
    )


# The statements of the frequent transactions, as SQL text for the driver
# (see ``parley.storage.statements``); ``%s`` takes the placeholders of a list.
_INSERT_USER = (
    "INSERT INTO users (user_id, last_cursor, delivered_cursor) VALUES (?, 0, 0)"
    " ON CONFLICT DO NOTHING"
)
_INSERT_DEVICE = (
    "INSERT INTO devices (user_id, device_id, acked_cursor, first_seen_at_ms,"
    " last_seen_at_ms) VALUES (?, ?, 0, ?, ?) ON CONFLICT DO NOTHING"
)
_USER_LAST_SEEN = "UPDATE users SET last_seen_at_ms = ? WHERE user_id = ?"
_DEVICE_LAST_SEEN = (
    "UPDATE devices SET last_seen_at_ms = ? WHERE user_id = ? AND device_id = ?"
)
_DEVICE_ACKED = "SELECT acked_cursor FROM devices WHERE user_id = ? AND device_id = ?"
_DEVICE_ACK = (
    "UPDATE devices SET acked_cursor = ?"
    " WHERE user_id = ? AND device_id = ? AND acked_cursor < ?"
)
_LAST_CURSOR = "SELECT last_cursor FROM users WHERE user_id = ?"
_LAST_CURSORS = "SELECT user_id, last_cursor FROM users WHERE user_id IN (%s)"
_USER_CURSORS = "SELECT last_cursor, delivered_cursor FROM users WHERE user_id = ?"
_USER_DELIVERED = "UPDATE users SET delivered_cursor = ? WHERE user_id = ?"
_NEXT_CURSORS = (
    "UPDATE users SET last_cursor = last_cursor + 1 WHERE user_id IN (%s)"
    " RETURNING user_id, last_cursor"
)
_INSERT_EVENT = (
    "INSERT INTO events (user_id, cursor, kind, chat_id, message_seq, sender_id,"
    " payload, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_EVENTS_AFTER = (
    "SELECT cursor, kind, payload FROM events WHERE user_id = ? AND cursor > ?"
    " ORDER BY cursor LIMIT ?"
)
_NEWEST_DELIVERED_BY_CHAT = (
    "SELECT chat_id, max(message_seq) FROM events"
    " WHERE user_id = ? AND cursor > ? AND cursor <= ? AND kind = ?"
    " AND sender_id != ? GROUP BY chat_id"
)
_MEMBER = (
    "SELECT role, joined_after, left_at, read_seq, delivered_seq, muted"
    " FROM members WHERE chat_id = ? AND user_id = ?"
)
_MEMBERS = (
    "SELECT user_id, role, joined_after, left_at, read_seq, delivered_seq, muted"
    " FROM members WHERE chat_id = ?"
)
# Each active member, whether muted, whether push reaches a device of theirs,
# and the member's read position.
_ACTIVE_MEMBERS = (
    "SELECT m.user_id, m.muted, EXISTS (SELECT 1 FROM devices d"
    " WHERE d.user_id = m.user_id AND d.push_service IS NOT NULL)"
    " FROM members m WHERE m.chat_id = ? AND m.left_at IS NULL"
)
_MEMBER_POSITIONS = (
    "SELECT read_seq, delivered_seq FROM members WHERE chat_id = ? AND user_id = ?"
)
_MEMBER_DELIVERED = (
    "UPDATE members SET delivered_seq = ? WHERE chat_id = ? AND user_id = ?"
)
_MEMBER_READ = (
    "UPDATE members SET read_seq = ?, delivered_seq = ?"
    " WHERE chat_id = ? AND user_id = ?"
)
_LAST_SEQ = "SELECT last_seq FROM chats WHERE id = ?"
_NEXT_SEQ = "UPDATE chats SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq"
_MESSAGE_COLUMNS = "chat_id, seq, sender_id, client_id, text, images, sent_at_ms"
_INSERT_MESSAGE = (
    f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_MESSAGE_MEDIA = (
    "INSERT INTO message_media (chat_id, seq, position, media_id) VALUES (?, ?, ?, ?)"
)
_MESSAGE_BY_CLIENT_ID = (
    f"SELECT {_MESSAGE_COLUMNS} FROM messages"
    " WHERE chat_id = ? AND sender_id = ? AND client_id = ?"
)
_PAGE_AFTER = (
    f"SELECT {_MESSAGE_COLUMNS} FROM messages"
    " WHERE chat_id = ? AND seq > ? AND seq < ? ORDER BY seq LIMIT ?"
)
_PAGE_BEFORE = (
    f"SELECT {_MESSAGE_COLUMNS} FROM messages"
    " WHERE chat_id = ? AND seq > ? AND seq < ? ORDER BY seq DESC LIMIT ?"
)
_ACTIVE_MEMBERS_UP_TO = (
    "SELECT COUNT(*) FROM (SELECT 1 FROM members"
    " WHERE chat_id = ? AND left_at IS NULL LIMIT ?) AS counted"
)
_SENDERS_BETWEEN = (
    "SELECT DISTINCT sender_id FROM messages"
    " WHERE chat_id = ? AND seq > ? AND seq <= ? AND sender_id != ?"
)
# The other active members of the user's active chats of at most ? members.
_CONTACTS = (
    "SELECT DISTINCT m.user_id FROM members m WHERE m.chat_id IN ("
    " SELECT mine.chat_id FROM user_chats uc JOIN members mine"
    " ON mine.chat_id = uc.chat_id AND mine.user_id = uc.user_id"
    " WHERE uc.user_id = ? AND mine.left_at IS NULL"
    " AND (SELECT count(*) FROM members c"
    " WHERE c.chat_id = mine.chat_id AND c.left_at IS NULL) <= ?)"
    " AND m.left_at IS NULL AND m.user_id != ? ORDER BY m.user_id"
)
# Above every sequence: the open end of a member's window.
_NO_SEQ = 2**62


def _sql(conn: AsyncConnection | _InlineConnection) -> Statements:
    """The statements of the transaction (or read) that ``conn`` is in."""
    if isinstance(conn, _InlineConnection):
        return conn.statements
    return DriverStatements(conn)


async def _memberships(conn: AsyncConnection, chat_id: int) -> list[Membership]:
    rows = await _sql(conn).rows(_MEMBERS, (chat_id,))
    return [
        Membership(chat_id, user_id, Role(role), after, left, read, delivered, bool(m))
        for user_id, role, after, left, read, delivered, m in rows
    ]


def _message_of(row: tuple) -> Message:
    """A message from the columns of ``_MESSAGE_COLUMNS``, in that order."""
    chat_id, seq, sender_id, client_id, text_, images, sent_at_ms = row
    return Message(
        chat_id,
        seq,
        sender_id,
        client_id,
        text_,
        orjson.loads(images) if images else [],
        sent_at_ms,
    )


async def _active_member_ids(conn: AsyncConnection, chat_id: int) -> list[str]:
    rows = await conn.scalars(
        select(members.c.user_id).where(
            members.c.chat_id == chat_id, members.c.left_at.is_(None)
        )
    )
    return list(rows.all())


async def _acting_member(
    conn: AsyncConnection, chat_id: int, actor_id: str
) -> tuple[ChatKind, Membership]:
    actor = await _membership(conn, chat_id, actor_id)
    if actor is None or not actor.active:
        raise chat_not_found(chat_id)
    kind = await conn.scalar(select(chats.c.kind).where(chats.c.id == chat_id))
    return ChatKind(kind), actor


def _message(row, prefix: str = "") -> Message:  # noqa: ANN001
    """A message from a row of ``messages``, its columns named ``prefix``+name."""
    mapping = row._mapping
    images = mapping[prefix + "images"]
    return Message(
        chat_id=mapping[prefix + "chat_id"],
        seq=mapping[prefix + "seq"],
        sender_id=mapping[prefix + "sender_id"],
        client_id=mapping[prefix + "client_id"],
        text=mapping[prefix + "text"],
        images=orjson.loads(images) if images else [],
        sent_at_ms=mapping[prefix + "sent_at_ms"],
    )


async def _chat_view(
    conn: AsyncConnection, chat_id: int, user_id: str
) -> ChatView | None:
    member = await _membership(conn, chat_id, user_id)
    if member is None:
        return None
    chat = (await conn.execute(select(chats).where(chats.c.id == chat_id))).one()

    visible_last = member.visible_last(chat.last_seq)
    last_message = None
    if visible_last > member.joined_after:
        row = (
            await conn.execute(
                select(messages).where(
                    messages.c.chat_id == chat_id, messages.c.seq == visible_last
                )
            )
        ).one_or_none()
        last_message = None if row is None else _message(row)

    member_ids = await _active_member_ids(conn, chat_id)
    return ChatView(
        chat_id=chat.id,
        kind=chat.kind,
        title=chat.title,
        admin_id=chat.admin_id,
        last_seq=chat.last_seq,
        member=member,
        last_message=last_message,
        member_ids=sorted(member_ids),
    )


_MEMBER_COLUMNS = [
    members.c.chat_id.label("m_chat_id"),
    members.c.user_id.label("m_user_id"),
    members.c.role.label("m_role"),
    members.c.joined_after.label("m_joined_after"),
    members.c.left_at.label("m_left_at"),
    members.c.read_seq.label("m_read_seq"),
    members.c.delivered_seq.label("m_delivered_seq"),
    members.c.muted.label("m_muted"),
]


def _last_message_columns(last) -> list:  # noqa: ANN001
    return [column.label(f"l_{column.name}") for column in last.c]


def _listed_chat_view(row, member_ids: list[str]) -> ChatView:  # noqa: ANN001
    member = _membership_from(row, "m_")
    last_message = _message(row, "l_") if row.l_seq is not None else None
    return ChatView(
        chat_id=row.id,
        kind=row.kind,
        title=row.title,
        admin_id=row.admin_id,
        last_seq=row.last_seq,
        member=member,
        last_message=last_message,
        member_ids=sorted(member_ids),
    )


async def _active_member_ids_of(
    conn: AsyncConnection, chat_ids: list[int]
) -> dict[int, list[str]]:
    if not chat_ids:
        return {}
    rows = await conn.execute(
        select(members.c.chat_id, members.c.user_id).where(
            members.c.chat_id.in_(chat_ids), members.c.left_at.is_(None)
        )
    )
    by_chat: dict[int, list[str]] = {}
    for chat_id, user_id in rows:
        by_chat.setdefault(chat_id, []).append(user_id)
    return by_chat


def _media_record(row) -> MediaRecord:  # noqa: ANN001
    return MediaRecord(
        media_id=row.id,
        content_type=row.content_type,
        bytes=row.bytes,
        width=row.width,
        height=row.height,
        frames=row.frames,
        thumbnail_bytes=row.thumbnail_bytes,
    )


async def _uploaded_by(conn: AsyncConnection, user_id: str, media_id: str) -> bool:
    uploaded = await conn.scalar(
        select(media_uploads.c.media_id).where(
            media_uploads.c.uploader_id == user_id, media_uploads.c.media_id == media_id
        )
    )
    return uploaded is not None


async def _visible_in_chat(
    conn: AsyncConnection, user_id: str, media_id: str, chat_id: int
) -> bool:
    """Whether a message of the chat within the member's window holds it."""
    member = await _membership(conn, chat_id, user_id)
    if member is None:
        return False
    seqs = await conn.scalars(
        select(message_media.c.seq).where(
            message_media.c.chat_id == chat_id, message_media.c.media_id == media_id
        )
    )
    return any(member.sees(seq) for seq in seqs)
