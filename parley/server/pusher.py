"""The pusher: takes due notifications from the durable queue and sends them.

Every node runs one. It claims due jobs for a lease (a node that dies leaves
its claims to expire), decides at the last moment whether each is still owed
(the device may have connected, or the chat been read elsewhere), and hands
it to the lane of its push service. Each service has its own lane with
bounded concurrency and a timeout, so a slow or failing service delays
neither the others nor message delivery, which never waits on a push.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable

import structlog

from parley import metrics
from parley.config import ConfigurationError, Settings
from parley.domain.push import (
    MAX_PUSH_ATTEMPTS,
    Decision,
    PushJob,
    PushKind,
    backoff_s,
    collapse_key,
    decide,
)
from parley.errors import ParleyError
from parley.ports import Presence
from parley.push import Notification, Outcome, PushAddress, PushResult, PushService
from parley.storage.sql import SqlStore

log = structlog.get_logger(__name__)

_POLL_S = 0.2
_CLAIM_LIMIT = 200
_SEND_TIMEOUT_S = 15.0


class Pusher:
    def __init__(
        self,
        settings: Settings,
        store: SqlStore,
        presence: Presence,
        services: dict[str, PushService],
        clock: Callable[[], int],
    ) -> None:
        self._settings = settings
        self._store = store
        self._presence = presence
        self._services = services
        self._clock = clock
        self._lanes: dict[str, asyncio.Queue[PushJob]] = {
            name: asyncio.Queue(settings.push_concurrency * 4) for name in services
        }
        self._tasks: list[asyncio.Task] = []
        self._wake = asyncio.Event()

    @property
    def services(self) -> list[str]:
        return sorted(self._services)

    async def start(self) -> None:
        for service in self._services.values():
            await service.start()
        for name in self._services:
            self._tasks += [
                asyncio.create_task(self._work_lane(name))
                for _ in range(self._settings.push_concurrency)
            ]
        if self._services:
            self._tasks.append(asyncio.create_task(self._claim_forever()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for service in self._services.values():
            await service.stop()

    def wake(self) -> None:
        """Something may be due now; look without waiting for the next poll."""
        self._wake.set()

    async def _claim_forever(self) -> None:
        lease_ms = int(self._settings.push_lease_s * 1000)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), _POLL_S)
            self._wake.clear()
            try:
                jobs = await self._store.claim_pushes(_CLAIM_LIMIT, lease_ms)
            except ParleyError:
                log.warning("push queue unavailable; will try again")
                continue
            for job in jobs:
                await self._route(job)

    async def _route(self, job: PushJob) -> None:
        lane = self._lanes.get(job.service)
        if lane is None:
            # No credentials for this service on this node: leave it to the
            # lease to expire, for a node that has them.
            return
        await lane.put(job)

    async def _work_lane(self, name: str) -> None:
        lane = self._lanes[name]
        while True:
            job = await lane.get()
            try:
                await self._push(self._services[name], job)
            except ParleyError:
                log.warning(
                    "push outcome not recorded; the lease will expire", service=name
                )
            except Exception:  # noqa: BLE001 - one bad job must not stop the lane
                log.exception("push failed", service=name, device_id=job.device_id)
                with contextlib.suppress(ParleyError):
                    await self._record(job, PushResult(Outcome.RETRY, None, "internal"))

    async def _push(self, service: PushService, job: PushJob) -> None:
        live = job.device_id in await self._presence.live_devices(job.user_id)
        decision, reason = decide(job, live)
        if decision is Decision.DROP:
            metrics.PUSHES.labels(service.name, f"dropped_{reason}").inc()
            await self._store.finish_push(job, delivered=False)
            return

        if job.attempts == 0:
            metrics.PUSHES.labels(service.name, "queued").inc()
        started = time.monotonic()
        result = await self._send(service, job)
        metrics.PUSH_SECONDS.labels(service.name).observe(time.monotonic() - started)
        metrics.PUSHES.labels(service.name, result.outcome.value).inc()
        await self._record(job, result)

    async def _send(self, service: PushService, job: PushJob) -> PushResult:
        address = PushAddress(job.service, job.token, job.p256dh, job.auth)
        notification = self._notification(job)
        try:
            return await asyncio.wait_for(
                service.send(address, notification), _SEND_TIMEOUT_S
            )
        except TimeoutError:
            return PushResult(Outcome.RETRY, None, "timeout")

    def _notification(self, job: PushJob) -> Notification:
        title = job.chat_title or job.sender_id or "Parley"
        show_text = self._settings.push_show_text and job.text
        return Notification(
            collapse_key=collapse_key(job.chat_id),
            title=title,
            body=job.text if show_text else None,
            unread_count=job.unread_count,
            data={
                "chat_id": str(job.chat_id),
                "seq": str(job.seq),
                "kind": job.kind.value,
            },
            withdraw=job.kind is PushKind.WITHDRAW,
        )

    async def _record(self, job: PushJob, result: PushResult) -> None:
        if result.outcome is Outcome.DELIVERED:
            latency_s = (self._clock() - job.queued_at_ms) / 1000
            metrics.PUSH_DELIVERY_SECONDS.labels(job.service).observe(
                max(0.0, latency_s)
            )
            await self._store.finish_push(job, delivered=True)
        elif result.outcome is Outcome.GONE:
            log.info(
                "push address removed", device_id=job.device_id, service=job.service
            )
            await self._store.forget_push_address(job)
        elif result.outcome is Outcome.RETRY and job.attempts + 1 < MAX_PUSH_ATTEMPTS:
            delay_s = backoff_s(job.attempts + 1, result.retry_after_s)
            await self._store.retry_push(job, self._clock() + int(delay_s * 1000))
        else:
            await self._store.finish_push(job, delivered=False)


def services_from_settings(settings: Settings) -> dict[str, PushService]:
    """The push services this node has credentials for."""
    services: dict[str, PushService] = {}
    if settings.apns_key_file is not None:
        from parley.push.apns import ApnsService

        services["apns"] = ApnsService(
            key_path=settings.apns_key_file,
            key_id=settings.apns_key_id,
            team_id=settings.apns_team_id,
            bundle_id=settings.apns_bundle_id,
            base_url=settings.apns_url,
            verify=_trust(settings.apns_ca_file),
        )
    if settings.fcm_service_account_file is not None:
        from parley.push.fcm import FcmService

        services["fcm"] = FcmService(
            service_account_path=settings.fcm_service_account_file,
            base_url=settings.fcm_url,
        )
    if settings.webpush_vapid_private_key:
        from parley.push.webpush import WebPushService

        if not settings.webpush_subject:
            raise ConfigurationError(
                "PARLEY_WEBPUSH_SUBJECT (a mailto: or https: contact) is required "
                "with a VAPID key"
            )
        services["webpush"] = WebPushService(
            vapid_private_key=settings.webpush_vapid_private_key,
            subject=settings.webpush_subject,
            verify=_trust(settings.webpush_ca_file),
        )
    return services


def _trust(ca_file) -> ssl.SSLContext | bool:  # noqa: ANN001
    """The system's trust store, or a private CA's (for a test service)."""
    if ca_file is None:
        return True
    return ssl.create_default_context(cafile=str(ca_file))
