"""Content-addressed blob storage in an S3-compatible object store.

An object is written once under its key (the SHA-256 of its content, or that
with ``.thumb``) and never changes; S3 answers a PUT only once the object is
durable, which is what the upload's acknowledgement waits for.
"""

from __future__ import annotations

import contextlib
import re

from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

_KEY = re.compile(r"[0-9a-f]{64}(\.thumb)?")
_MISSING = {"NoSuchKey", "404", "NotFound"}


class S3MediaStore:
    """Blobs as objects of one bucket, under an optional prefix."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> None:
        self._bucket = bucket
        self._prefix = prefix
        self._options = {
            "endpoint_url": endpoint_url or None,
            "region_name": region or None,
            "aws_access_key_id": access_key_id or None,
            "aws_secret_access_key": secret_access_key or None,
            "config": Config(retries={"max_attempts": 3, "mode": "standard"}),
        }
        self._stack = contextlib.AsyncExitStack()
        self._client = None

    async def start(self) -> None:
        session = get_session()
        self._client = await self._stack.enter_async_context(
            session.create_client("s3", **self._options)
        )

    async def stop(self) -> None:
        await self._stack.aclose()

    def _object(self, key: str) -> str:
        if not _KEY.fullmatch(key):
            raise ValueError(f"Invalid media key {key!r}.")
        return self._prefix + key

    async def put(self, key: str, content: bytes) -> None:
        """Store the content under the key; raises OSError if S3 refuses."""
        name = self._object(key)
        try:
            await self._client.put_object(Bucket=self._bucket, Key=name, Body=content)
        except (BotoCoreError, ClientError) as error:
            raise OSError(f"object store refused {name}: {error}") from error

    async def get(self, key: str) -> bytes | None:
        name = self._object(key)
        try:
            answer = await self._client.get_object(Bucket=self._bucket, Key=name)
            async with answer["Body"] as body:
                return await body.read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise OSError(f"object store refused {name}: {error}") from error
        except BotoCoreError as error:
            raise OSError(f"object store unavailable: {error}") from error

    async def exists(self, key: str) -> bool:
        name = self._object(key)
        try:
            await self._client.head_object(Bucket=self._bucket, Key=name)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _MISSING:
                return False
            raise OSError(f"object store refused {name}: {error}") from error
        return True

    async def check(self) -> None:
        """Raise OSError unless the bucket answers (readiness)."""
        try:
            await self._client.head_bucket(Bucket=self._bucket)
        except (BotoCoreError, ClientError) as error:
            raise OSError(f"object store unavailable: {error}") from error
