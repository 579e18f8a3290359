"""A real Parley server process on a loopback port, for end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from parley.auth import mint_token
from parley.config import Settings

DATA = Path(__file__).parent / "data"
IMAGES = DATA / "images"

START_TIMEOUT_S = 20.0

# The PostgreSQL server the tests create their databases on.
POSTGRES_URL = os.environ.get(
    "PARLEY_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)


REDIS_URL = os.environ.get("PARLEY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class S3Server:
    """An S3-compatible server (moto) on a loopback port, in a child process."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / "s3-server.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> S3Server:
        executable = Path(sys.executable).with_name("moto_server")
        self.process = subprocess.Popen(
            [str(executable), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url, timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"S3 server not ready: {self.log_path.read_text()[-2000:]}")

    def create_bucket(self) -> str:
        name = f"parley-{uuid.uuid4().hex[:12]}"
        httpx.put(f"{self.url}/{name}", timeout=5).raise_for_status()
        return name

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)

    def env(self, bucket: str) -> dict[str, str]:
        return {
            "PARLEY_S3_BUCKET": bucket,
            "PARLEY_S3_ENDPOINT_URL": self.url,
            "PARLEY_S3_REGION": "us-east-1",
            "PARLEY_S3_ACCESS_KEY_ID": "parley-test",
            "PARLEY_S3_SECRET_ACCESS_KEY": "parley-test-secret",
            # Credentials are given; never ask an instance metadata service.
            "AWS_EC2_METADATA_DISABLED": "true",
        }


def create_postgres_database() -> str:
    """A new, empty database on the test PostgreSQL; returns its URL."""
    name = f"parley_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_execute_autocommit(POSTGRES_URL, f'CREATE DATABASE "{name}"'))
    return POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_postgres_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    asyncio.run(
        _execute_autocommit(
            POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        )
    )


async def _execute_autocommit(url: str, statement: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


def migrate(database_url: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "parley", "migrate"],
        env={**os.environ, "PARLEY_DATABASE_URL": database_url},
        check=True,
        capture_output=True,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """``parley serve`` in a child process, with its own data directory."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {})}
        self.env.setdefault("PARLEY_LOG_LEVEL", "warning")
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "parley",
                "serve",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited: {self.log_path.read_text()[-2000:]}"
                )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server not ready: {self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        """``kill -9``: no shutdown, no flush, nothing."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def token(self, user_id: str, device_id: str = "default", ttl_s: int = 3600) -> str:
        settings = Settings(
            data_dir=self.data_dir, jwt_secret=self.env.get("PARLEY_JWT_SECRET", "")
        )
        return mint_token(settings, user_id, device_id, ttl_s)
