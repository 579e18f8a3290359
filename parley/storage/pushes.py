"""The durable push queue: queued with the message, claimed and finished by nodes.

A device is owed at most one notification per chat (a row of ``push_jobs``);
a newer message of the chat updates that row, so a burst collapses into one
push that shows the count. Any node claims due rows for a lease, sends them,
and finishes them; a node that dies leaves its claims to expire and be taken
by another. The rows are written in the transactions of ``SqlStore``.
"""

from __future__ import annotations

from sqlalchemy import and_, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from parley.domain.push import PushJob, PushKind
from parley.storage.schema import (
    chats,
    devices,
    members,
    messages,
    push_jobs,
    push_shown,
)
from parley.storage.statements import Statements, placeholders


async def queue_notifications(
    sql: Statements,
    *,
    chat_id: int,
    seq: int,
    recipients: list[str],
    now_ms: int,
    delay_ms: int,
) -> int:
    """Owe every push-capable device of ``recipients`` (members who have not
    muted the chat) a notification."""
    if not recipients:
        return 0
    targets = await sql.rows(_PUSH_DEVICES % placeholders(len(recipients)), recipients)
    if not targets:
        return 0

    due_at_ms = now_ms + delay_ms
    await sql.run_many(
        _OWE_NOTIFICATION,
        [
            (user_id, device_id, chat_id, PushKind.NOTIFY.value, seq, now_ms, due_at_ms)
            for user_id, device_id in targets
        ],
    )
    return len(targets)


async def queue_withdrawals(
    sql: Statements,
    *,
    user_id: str,
    chat_id: int,
    read_seq: int,
    now_ms: int,
) -> None:
    """The user read the chat: nothing more to notify, and shown ones go."""
    await sql.run(_FORGET_NOTIFICATIONS, (user_id, chat_id, read_seq))
    shown = await sql.rows(_SHOWN_UP_TO, (user_id, chat_id, read_seq))
    if not shown:
        return

    await sql.run_many(
        _OWE_WITHDRAWAL,
        [
            (user_id, device_id, chat_id, PushKind.WITHDRAW.value, seq, now_ms, now_ms)
            for device_id, seq in shown
        ],
    )


_PUSH_DEVICES = (
    "SELECT user_id, device_id FROM devices"
    " WHERE user_id IN (%s) AND push_service IS NOT NULL"
)
_FORGET_NOTIFICATIONS = (
    "DELETE FROM push_jobs WHERE user_id = ? AND chat_id = ?"
    " AND kind = 'notify' AND seq <= ?"
)
_SHOWN_UP_TO = (
    "SELECT device_id, seq FROM push_shown"
    " WHERE user_id = ? AND chat_id = ? AND seq <= ?"
)
# One job per device and chat: the newest fact replaces the older, and a
# notification keeps the moment its burst began, so the burst goes out as one.
_OWE = (
    "INSERT INTO push_jobs (user_id, device_id, chat_id, kind, seq,"
    " queued_at_ms, due_at_ms, attempts, claimed_until_ms)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0)"
    " ON CONFLICT (user_id, device_id, chat_id) DO UPDATE SET"
    " kind = excluded.kind, seq = excluded.seq, attempts = 0, due_at_ms = %s"
)
_OWE_NOTIFICATION = _OWE % (
    "CASE WHEN push_jobs.kind = 'notify' THEN push_jobs.due_at_ms"
    " ELSE excluded.due_at_ms END"
)
_OWE_WITHDRAWAL = _OWE % "excluded.due_at_ms"


async def claim(
    conn: AsyncConnection, *, now_ms: int, lease_ms: int, limit: int
) -> list[PushJob]:
    """Take up to ``limit`` due rows for ``lease_ms``; another node skips them."""
    due = (
        await conn.execute(
            select(push_jobs.c.user_id, push_jobs.c.device_id, push_jobs.c.chat_id)
            .where(
                push_jobs.c.due_at_ms <= now_ms, push_jobs.c.claimed_until_ms <= now_ms
            )
            .order_by(push_jobs.c.due_at_ms)
            .limit(limit)
        )
    ).all()

    claimed = []
    for key in due:
        taken = await conn.execute(
            update(push_jobs)
            .where(*_job_key(*key), push_jobs.c.claimed_until_ms <= now_ms)
            .values(claimed_until_ms=now_ms + lease_ms)
        )
        if taken.rowcount == 1:
            job = await _job(conn, *key)
            if job is not None:
                claimed.append(job)
    return claimed


async def finish(
    conn: AsyncConnection, job: PushJob, *, delivered: bool, is_sqlite: bool
) -> None:
    """Done with a job: remember what the device shows, and let the row go
    unless a newer message changed it meanwhile (then it is due again)."""
    if delivered and job.kind is PushKind.NOTIFY:
        statement = (sqlite if is_sqlite else postgresql).insert(push_shown)
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[
                    push_shown.c.user_id,
                    push_shown.c.device_id,
                    push_shown.c.chat_id,
                ],
                set_={"seq": statement.excluded.seq},
            ).values(
                user_id=job.user_id,
                device_id=job.device_id,
                chat_id=job.chat_id,
                seq=job.seq,
            )
        )
    elif delivered:
        await conn.execute(
            delete(push_shown).where(
                push_shown.c.user_id == job.user_id,
                push_shown.c.device_id == job.device_id,
                push_shown.c.chat_id == job.chat_id,
                push_shown.c.seq <= job.seq,
            )
        )
    await _release(conn, job)


async def retry(conn: AsyncConnection, job: PushJob, *, due_at_ms: int) -> None:
    await conn.execute(
        update(push_jobs)
        .where(*_job_key(job.user_id, job.device_id, job.chat_id))
        .values(
            attempts=push_jobs.c.attempts + 1, due_at_ms=due_at_ms, claimed_until_ms=0
        )
    )


async def forget_address(conn: AsyncConnection, job: PushJob) -> None:
    """The service says the address is gone: stop pushing to it."""
    changed = await conn.execute(
        select(devices.c.device_id).where(
            devices.c.user_id == job.user_id,
            devices.c.device_id == job.device_id,
            devices.c.push_token == job.token,
        )
    )
    if changed.first() is not None:
        await forget_device(conn, job.user_id, job.device_id)


async def forget_device(conn: AsyncConnection, user_id: str, device_id: str) -> None:
    """No push address for the device, and nothing owed or shown on it."""
    await conn.execute(
        update(devices)
        .where(devices.c.user_id == user_id, devices.c.device_id == device_id)
        .values(push_service=None, push_token=None, push_p256dh=None, push_auth=None)
    )
    await conn.execute(
        delete(push_jobs).where(
            push_jobs.c.user_id == user_id, push_jobs.c.device_id == device_id
        )
    )
    await conn.execute(
        delete(push_shown).where(
            push_shown.c.user_id == user_id, push_shown.c.device_id == device_id
        )
    )


async def _release(conn: AsyncConnection, job: PushJob) -> None:
    removed = await conn.execute(
        delete(push_jobs).where(
            *_job_key(job.user_id, job.device_id, job.chat_id),
            push_jobs.c.kind == job.kind.value,
            push_jobs.c.seq == job.seq,
        )
    )
    if removed.rowcount == 0:
        await conn.execute(
            update(push_jobs)
            .where(*_job_key(job.user_id, job.device_id, job.chat_id))
            .values(claimed_until_ms=0)
        )


def _job_key(user_id: str, device_id: str, chat_id: int) -> list:
    return [
        push_jobs.c.user_id == user_id,
        push_jobs.c.device_id == device_id,
        push_jobs.c.chat_id == chat_id,
    ]


async def _job(
    conn: AsyncConnection, user_id: str, device_id: str, chat_id: int
) -> PushJob | None:
    row = (
        await conn.execute(
            select(
                push_jobs,
                devices.c.push_service,
                devices.c.push_token,
                devices.c.push_p256dh,
                devices.c.push_auth,
            )
            .join(
                devices,
                and_(
                    devices.c.user_id == push_jobs.c.user_id,
                    devices.c.device_id == push_jobs.c.device_id,
                ),
            )
            .where(*_job_key(user_id, device_id, chat_id))
        )
    ).one_or_none()
    if row is None or row.push_service is None:
        await conn.execute(
            delete(push_jobs).where(*_job_key(user_id, device_id, chat_id))
        )
        return None

    chat = (await conn.execute(select(chats).where(chats.c.id == chat_id))).one()
    member = (
        await conn.execute(
            select(members).where(
                members.c.chat_id == chat_id, members.c.user_id == user_id
            )
        )
    ).one_or_none()
    message = (
        await conn.execute(
            select(messages.c.sender_id, messages.c.text).where(
                messages.c.chat_id == chat_id, messages.c.seq == row.seq
            )
        )
    ).one_or_none()

    visible_last = chat.last_seq
    if member is not None and member.left_at is not None:
        visible_last = min(visible_last, member.left_at)
    return PushJob(
        user_id=user_id,
        device_id=device_id,
        chat_id=chat_id,
        kind=PushKind(row.kind),
        seq=row.seq,
        queued_at_ms=row.queued_at_ms,
        attempts=row.attempts,
        service=row.push_service,
        token=row.push_token,
        p256dh=row.push_p256dh,
        auth=row.push_auth,
        chat_title=chat.title,
        sender_id=message.sender_id if message else None,
        text=message.text if message else None,
        read_seq=member.read_seq if member else 0,
        visible_last=visible_last,
        active=member is not None and member.left_at is None,
        muted=bool(member.muted) if member else True,
    )
