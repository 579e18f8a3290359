"""Fixtures for the push tests: keys made for the test, fakes and senders on loopback.

Every sender is pointed at a fake on 127.0.0.1 and trusts a certificate
authority made for the test run; no test reaches Apple, Google or a browser
vendor.
"""

from __future__ import annotations

import secrets
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from parley.push.apns import ApnsService
from parley.push.fcm import FcmService
from parley.push.webpush import WebPushService
from tests.push.fakes import (
    BUNDLE_ID,
    CLIENT_EMAIL,
    KEY_ID,
    PROJECT_ID,
    TEAM_ID,
    VAPID_SUBJECT,
    FakeApns,
    FakeClock,
    FakeFcm,
    FakeWebPush,
    server_tls,
    write_p8,
    write_service_account,
)


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def client_tls(tls_ca: trustme.CA) -> ssl.SSLContext:
    """What senders verify the fakes with: the test's authority and no other."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls_ca.configure_trust(context)
    return context


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# APNs -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def apns_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
async def fake_apns(
    tls_ca: trustme.CA, apns_key: ec.EllipticCurvePrivateKey, clock: FakeClock
) -> AsyncIterator[FakeApns]:
    fake = FakeApns(
        team_id=TEAM_ID,
        key_id=KEY_ID,
        public_key=apns_key.public_key(),
        bundle_id=BUNDLE_ID,
        ssl_context=server_tls(tls_ca, ["h2"]),
        clock=clock,
    )
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def apns_key_path(apns_key: ec.EllipticCurvePrivateKey, tmp_path: Path) -> Path:
    return write_p8(apns_key, tmp_path / f"AuthKey_{KEY_ID}.p8")


@pytest.fixture
async def apns(
    fake_apns: FakeApns,
    apns_key_path: Path,
    client_tls: ssl.SSLContext,
    clock: FakeClock,
) -> AsyncIterator[ApnsService]:
    service = ApnsService(
        key_path=apns_key_path,
        key_id=KEY_ID,
        team_id=TEAM_ID,
        bundle_id=BUNDLE_ID,
        base_url=fake_apns.url,
        verify=client_tls,
        timeout_s=5.0,
        clock=clock,
    )
    await service.start()
    yield service
    await service.stop()


# FCM --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def service_account_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
async def fake_fcm(service_account_key: rsa.RSAPrivateKey) -> AsyncIterator[FakeFcm]:
    fake = FakeFcm(
        project_id=PROJECT_ID,
        client_email=CLIENT_EMAIL,
        private_key_id=secrets.token_hex(20),
        public_key=service_account_key.public_key(),
    )
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def service_account_path(
    fake_fcm: FakeFcm, service_account_key: rsa.RSAPrivateKey, tmp_path: Path
) -> Path:
    """A service account JSON as Firebase's console gives it, aimed at the fake."""
    return write_service_account(fake_fcm, service_account_key, tmp_path / "sa.json")


@pytest.fixture
async def fcm(
    fake_fcm: FakeFcm, service_account_path: Path
) -> AsyncIterator[FcmService]:
    service = FcmService(
        service_account_path=service_account_path,
        base_url=fake_fcm.url,
        timeout_s=5.0,
    )
    await service.start()
    yield service
    await service.stop()


# Web Push ---------------------------------------------------------------------


@pytest.fixture
async def fake_webpush(
    tls_ca: trustme.CA, clock: FakeClock
) -> AsyncIterator[FakeWebPush]:
    fake = FakeWebPush(ssl_context=server_tls(tls_ca, ["http/1.1"]), clock=clock)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture(scope="session")
def vapid_key_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture
async def webpush(
    fake_webpush: FakeWebPush,
    vapid_key_pem: str,
    client_tls: ssl.SSLContext,
    clock: FakeClock,
) -> AsyncIterator[WebPushService]:
    service = WebPushService(
        vapid_private_key=vapid_key_pem,
        subject=VAPID_SUBJECT,
        verify=client_tls,
        timeout_s=5.0,
        clock=clock,
    )
    await service.start()
    yield service
    await service.stop()
