"""Tests for the local content-addressed media store."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from pathlib import Path

import pytest

from parley.media.local import LocalMediaStore

CONTENT = b"\x89PNG pretend image bytes"
KEY = hashlib.sha256(CONTENT).hexdigest()
THUMB_KEY = KEY + ".thumb"

INVALID_KEYS = [
    "",
    KEY[:63],
    KEY + "0",
    KEY.upper(),
    KEY + "\n",
    KEY + ".png",
    KEY + ".thumb.thumb",
    "../" + KEY[3:],
    "/" + KEY[1:],
    KEY[:2] + "/" + KEY[3:],
    "g" * 64,
]


@pytest.fixture
def store(tmp_path: Path) -> LocalMediaStore:
    return LocalMediaStore(tmp_path / "media")


def files_under(root: Path) -> list[str]:
    files = (path for path in root.rglob("*") if path.is_file())
    return sorted(str(path.relative_to(root)) for path in files)


@pytest.mark.asyncio
async def test_what_is_put_can_be_got_back(store: LocalMediaStore) -> None:
    """get returns exactly the bytes that put stored."""
    await store.put(KEY, CONTENT)

    assert await store.get(KEY) == CONTENT


@pytest.mark.asyncio
async def test_a_missing_key_gets_none_and_does_not_exist(
    store: LocalMediaStore,
) -> None:
    """Before put, get gives None and exists is False; after, exists is True."""
    assert await store.get(KEY) is None
    assert await store.exists(KEY) is False

    await store.put(KEY, CONTENT)

    assert await store.exists(KEY) is True


@pytest.mark.asyncio
async def test_blobs_fan_out_by_the_first_two_hex_digits(tmp_path: Path) -> None:
    """A blob and its thumbnail live in a directory named by the key's first digits."""
    root = tmp_path / "media"
    store = LocalMediaStore(root)

    await store.put(KEY, CONTENT)
    await store.put(THUMB_KEY, b"thumbnail")

    assert files_under(root) == [f"{KEY[:2]}/{KEY}", f"{KEY[:2]}/{THUMB_KEY}"]
    assert await store.get(THUMB_KEY) == b"thumbnail"


@pytest.mark.asyncio
async def test_putting_the_same_key_again_keeps_the_first_content(
    store: LocalMediaStore,
) -> None:
    """put is idempotent: a key names its content, so a second put changes nothing."""
    await store.put(KEY, CONTENT)
    await store.put(KEY, CONTENT)
    await store.put(KEY, b"something else")

    assert await store.get(KEY) == CONTENT


@pytest.mark.asyncio
async def test_concurrent_puts_of_one_key_all_succeed(tmp_path: Path) -> None:
    """Many writers of the same blob at once leave one whole blob and no temp files."""
    root = tmp_path / "media"
    store = LocalMediaStore(root)

    await asyncio.gather(*(store.put(KEY, CONTENT) for _ in range(20)))

    assert await store.get(KEY) == CONTENT
    assert files_under(root) == [f"{KEY[:2]}/{KEY}"]


@pytest.mark.asyncio
@pytest.mark.parametrize("key", INVALID_KEYS)
async def test_keys_that_are_not_a_hex_digest_are_refused(
    key: str, tmp_path: Path
) -> None:
    """Every method raises ValueError for a malformed key and touches no file."""
    root = tmp_path / "media"
    store = LocalMediaStore(root)

    with pytest.raises(ValueError):
        await store.put(key, CONTENT)
    with pytest.raises(ValueError):
        await store.get(key)
    with pytest.raises(ValueError):
        await store.exists(key)
    assert not root.exists()


@pytest.mark.asyncio
async def test_put_fsyncs_the_file_before_the_rename_and_the_directory_after(
    store: LocalMediaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The blob's bytes reach disk before it gets its name, and the name after."""
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        kind = "directory" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        calls.append(f"fsync {kind}")
        real_fsync(fd)

    def replace(source: str, target: os.PathLike[str]) -> None:
        calls.append("replace")
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)

    await store.put(KEY, CONTENT)

    # The first put also creates the fan-out directory, and fsyncs its parent.
    assert calls == ["fsync directory", "fsync file", "replace", "fsync directory"]


@pytest.mark.asyncio
async def test_a_failed_write_leaves_neither_blob_nor_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the rename fails, put raises and the temporary file is removed."""
    root = tmp_path / "media"
    store = LocalMediaStore(root)

    def replace(source: str, target: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", replace)

    with pytest.raises(OSError):
        await store.put(KEY, CONTENT)

    assert files_under(root) == []
    assert await store.exists(KEY) is False


@pytest.mark.asyncio
async def test_check_passes_on_a_writable_root_and_creates_it(tmp_path: Path) -> None:
    """The readiness check creates a missing root, writes to it and leaves it clean."""
    root = tmp_path / "not" / "yet" / "there"
    store = LocalMediaStore(root)

    await store.check()

    assert root.is_dir()
    assert files_under(root) == []


@pytest.mark.asyncio
async def test_check_raises_os_error_when_the_root_cannot_be_written(
    tmp_path: Path,
) -> None:
    """A root that cannot be a directory fails the readiness check with OSError."""
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    store = LocalMediaStore(blocker / "media")

    with pytest.raises(OSError):
        await store.check()


@pytest.mark.asyncio
async def test_put_raises_os_error_when_the_root_cannot_be_written(
    tmp_path: Path,
) -> None:
    """A write that cannot happen is an OSError for the caller to translate."""
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    store = LocalMediaStore(blocker / "media")

    with pytest.raises(OSError):
        await store.put(KEY, CONTENT)


async def test_starting_removes_writes_that_a_crash_left_unfinished(tmp_path) -> None:
    """A temp file from a write cut short by kill -9 is gone after start."""
    store = LocalMediaStore(tmp_path)
    await store.put("ab" * 32, b"kept")
    leftover = tmp_path / "ab" / ".tmp-abandoned"
    leftover.write_bytes(b"half")

    await LocalMediaStore(tmp_path).start()

    assert not leftover.exists()
    assert await store.get("ab" * 32) == b"kept"
