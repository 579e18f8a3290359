"""Content-addressed blob storage on the local disk."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from pathlib import Path

# A hex SHA-256, optionally marked as the thumbnail of that content. fullmatch,
# because "$" would also accept a trailing newline.
_KEY = re.compile(r"[0-9a-f]{64}(\.thumb)?")
_TEMP_PREFIX = ".tmp-"


class LocalMediaStore:
    """Blobs under a root directory, fanned out by the first two hex digits of the key.

    A key names its content, so a blob is written once and never changes: put is
    idempotent, and a reader sees either no blob or all of it.
    """

    def __init__(self, root: Path) -> None:
        self._root = Path(root)

    async def start(self) -> None:
        """Make the root, and remove halves of writes that a crash interrupted."""
        await asyncio.to_thread(self._root.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(self._remove_unfinished)

    def _remove_unfinished(self) -> None:
        for unfinished in self._root.glob(f"*/{_TEMP_PREFIX}*"):
            with contextlib.suppress(FileNotFoundError):
                unfinished.unlink()

    async def stop(self) -> None:
        return None

    async def put(self, key: str, content: bytes) -> None:
        """Store the content under the key, durably, unless it is there already."""
        path = self._path(key)
        await asyncio.to_thread(self._put, path, content)

    async def get(self, key: str) -> bytes | None:
        """Return the content stored under the key, or None if there is none."""
        path = self._path(key)
        return await asyncio.to_thread(_read_or_none, path)

    async def exists(self, key: str) -> bool:
        """Tell whether content is stored under the key."""
        path = self._path(key)
        return await asyncio.to_thread(path.is_file)

    async def check(self) -> None:
        """Raise OSError unless a file can be written under the root (readiness)."""
        await asyncio.to_thread(self._check)

    def _path(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise ValueError(f"Invalid media key {key!r}.")
        return self._root / key[:2] / key

    def _put(self, path: Path, content: bytes) -> None:
        if path.is_file():
            return

        directory = path.parent
        self._make_directory(directory)
        temp = _write_temp(directory, content)
        try:
            os.replace(temp, path)
        except BaseException:
            _remove_quietly(temp)
            raise

        # The rename is durable only once the directory entry is on disk.
        _fsync_directory(directory)

    def _make_directory(self, directory: Path) -> None:
        try:
            directory.mkdir(parents=True)
        except FileExistsError:
            return
        _fsync_directory(directory.parent)

    def _check(self) -> None:
        self._root.mkdir(parents=True, exist_ok=True)
        temp = _write_temp(self._root, b"ok")
        _remove_quietly(temp)


def _write_temp(directory: Path, content: bytes) -> Path:
    fd, name = tempfile.mkstemp(dir=directory, prefix=_TEMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        _remove_quietly(Path(name))
        raise
    return Path(name)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
