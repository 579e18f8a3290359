"""The ``parley`` command: run the server, manage its schema, and try it out."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import click

from parley.config import ConfigurationError, Settings, load_settings


class _Commands(click.Group):
    """Turns an unreadable configuration into one line, not a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ConfigurationError as error:
            raise click.ClickException(str(error)) from None


@click.group(cls=_Commands)
@click.version_option(package_name="parley")
def main() -> None:
    """Parley, a messenger server."""


# -- operating the server ----------------------------------------------------


@main.command()
@click.option("--host", help="Address to listen on [PARLEY_HOST, 127.0.0.1].")
@click.option("--port", type=int, help="Port to listen on [PARLEY_PORT, 8080].")
@click.option(
    "--data-dir", type=click.Path(path_type=Path), help="[PARLEY_DATA_DIR, ./data]"
)
def serve(host: str | None, port: int | None, data_dir: Path | None) -> None:
    """Run a server node until interrupted."""
    import uvicorn

    from parley import logs
    from parley.server.app import create_node

    settings = _settings(host=host, port=port, data_dir=data_dir)
    logs.configure(settings.log_level, settings.log_format)
    # The database and images are people's messages: readable by Parley only.
    os.umask(0o077)
    _raise_open_file_limit()
    _prepare_schema(settings)
    _tune_garbage_collector()

    # Known shortcoming: Uvicorn sets no deadline for a request's headers, so
    # a slow client can hold a socket; the TLS proxy in front must set one
    # (nginx: client_header_timeout).
    uvicorn.run(
        create_node(settings),
        host=settings.host,
        port=settings.port,
        ws_max_size=settings.max_frame_bytes,
        ws_ping_interval=settings.heartbeat_interval_s,
        ws_ping_timeout=settings.heartbeat_timeout_s,
        log_config=None,
        timeout_graceful_shutdown=10,
        ws_per_message_deflate=settings.ws_compression,
        # The protocol whose socket the gateway writes to (server/sockets.py).
        ws="websockets-sansio",
    )


@main.command()
@click.option(
    "--data-dir", type=click.Path(path_type=Path), help="[PARLEY_DATA_DIR, ./data]"
)
def migrate(data_dir: Path | None) -> None:
    """Bring the database's schema up to this version of Parley."""
    from parley.storage import migrate as schema

    settings = _settings(data_dir=data_dir)
    _ensure_sqlite_directory(settings)
    schema.upgrade(settings.resolved_database_url)
    click.echo(f"schema at {schema.head_revision()}")


@main.command()
@click.argument("user")
@click.option("--device", default="cli", show_default=True, help="Device name.")
@click.option(
    "--ttl",
    "ttl_s",
    type=int,
    default=30 * 24 * 3600,
    show_default=True,
    help="Seconds until it expires.",
)
@click.option(
    "--data-dir", type=click.Path(path_type=Path), help="[PARLEY_DATA_DIR, ./data]"
)
def token(user: str, device: str, ttl_s: int, data_dir: Path | None) -> None:
    """Mint a token for USER, signed with this server's secret, for trying Parley."""
    from parley.auth import mint_token
    from parley.errors import ParleyError

    try:
        click.echo(mint_token(_settings(data_dir=data_dir), user, device, ttl_s))
    except ParleyError as error:
        raise click.ClickException(error.message) from None


@main.command()
def openapi() -> None:
    """Print the OpenAPI document of the HTTP API."""
    from parley.server.app import create_app

    document = create_app(load_settings()).openapi()
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


def _raise_open_file_limit() -> None:
    """Every live device is a socket: allow as many as the system lets us."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _tune_garbage_collector() -> None:
    """Collect young objects less often. A send makes a few hundred short-lived
    containers; at the default threshold the collector ran every few sends
    and, now and then, walked every connection's objects in a full
    collection that stalled every device at once. The older generations
    keep their default ratios, so cycles that outlive their connection (a
    dropped socket's) are still collected."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 10, 10)


def _settings(**overrides: object) -> Settings:
    return load_settings(
        **{key: value for key, value in overrides.items() if value is not None}
    )


def _ensure_sqlite_directory(settings: Settings) -> None:
    if settings.resolved_database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)


def _prepare_schema(settings: Settings) -> None:
    """Migrate the embedded SQLite file; refuse any other database not at head."""
    from parley.storage import migrate as schema

    _ensure_sqlite_directory(settings)
    if settings.resolved_database_url.startswith("sqlite"):
        schema.upgrade(settings.resolved_database_url)
    try:
        schema.check(settings.resolved_database_url)
    except schema.SchemaMismatch as error:
        raise click.ClickException(f"cannot serve: {error}") from None


# -- trying it from a terminal -----------------------------------------------

_url_option = click.option(
    "--url",
    envvar="PARLEY_URL",
    default=lambda: load_settings().url,
    show_default="from PARLEY_HOST and PARLEY_PORT",
    help="The server [PARLEY_URL].",
)
_token_option = click.option(
    "--token", envvar="PARLEY_TOKEN", required=True, help="Your token [PARLEY_TOKEN]."
)


def _run(coroutine) -> None:  # noqa: ANN001
    import httpx
    import websockets

    from parley.client import ParleyClientError

    try:
        asyncio.run(coroutine)
    except ParleyClientError as error:
        raise click.ClickException(f"{error.code}: {error.message}") from None
    except (httpx.HTTPError, websockets.WebSocketException, OSError) as error:
        raise click.ClickException(
            f"cannot reach the server ({error}); is it running, and is --url right?"
        ) from None
    except KeyboardInterrupt:
        pass


def _show(value: object) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


@main.command()
@_url_option
@_token_option
def chats(url: str, token: str) -> None:
    """List your chats with their unread counts."""
    from parley.client import ParleyClient

    async def run() -> None:
        async with ParleyClient(url, token) as client:
            for chat in await client.chats():
                name = chat["title"] or ", ".join(chat["members"])
                preview = _preview(chat["last_message"])
                unread = chat["unread_count"]
                click.echo(f"#{chat['id']:<5} {name:<30} unread {unread:<4} {preview}")

    _run(run())


@main.command()
@_url_option
@_token_option
@click.option("--to", "to_user", help="Send in the private chat with this user.")
@click.option("--chat", "chat_id", type=int, help="Send in this chat.")
@click.option(
    "--image",
    "image_paths",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Attach an image (up to 3).",
)
@click.argument("text", required=False)
def send(
    url: str,
    token: str,
    to_user: str | None,
    chat_id: int | None,
    image_paths: tuple[Path, ...],
    text: str | None,
) -> None:
    """Send TEXT (and images) to a user or a chat."""
    from parley.client import ParleyClient

    if (to_user is None) == (chat_id is None):
        raise click.UsageError("Give exactly one of --to USER or --chat ID.")

    async def run() -> None:
        async with ParleyClient(url, token) as client:
            target = chat_id or (await client.open_private_chat(to_user))["id"]
            media_ids = [
                (await client.upload_image(path.read_bytes()))["id"]
                for path in image_paths
            ]
            _show(await client.send(target, text, images=media_ids))

    _run(run())


@main.command()
@_url_option
@_token_option
@click.argument("chat_id", type=int)
@click.argument("seq", type=int, required=False)
def read(url: str, token: str, chat_id: int, seq: int | None) -> None:
    """Mark CHAT_ID read up to SEQ (default: its newest message)."""
    from parley.client import ParleyClient

    async def run() -> None:
        async with ParleyClient(url, token) as client:
            target = (
                seq if seq is not None else (await client.chat(chat_id))["last_seq"]
            )
            _show(await client.read(chat_id, target))

    _run(run())


@main.command()
@_url_option
@_token_option
@click.argument("chat_id", type=int)
@click.argument("seq", type=int)
def receipts(url: str, token: str, chat_id: int, seq: int) -> None:
    """Show who has the message SEQ of CHAT_ID: sent, delivered or read."""
    from parley.client import ParleyClient

    async def run() -> None:
        async with ParleyClient(url, token) as client:
            _show(await client.receipts(chat_id, seq))

    _run(run())


@main.command()
@_url_option
@_token_option
@click.option(
    "--cursor", type=int, help="Start after this cursor (default: where you left)."
)
def listen(url: str, token: str, cursor: int | None) -> None:
    """Print every event of your account as it arrives, one JSON line each."""
    from parley.client import ParleyClient

    async def run() -> None:
        async with ParleyClient(url, token) as client, client.connect(cursor) as device:
            click.echo(json.dumps(device.welcome))
            async for frame in device:
                click.echo(json.dumps(frame, ensure_ascii=False))

    _run(run())


@main.command()
@_url_option
@_token_option
@click.option("--to", "to_user", help="Chat privately with this user.")
@click.option("--chat", "chat_id", type=int, help="Chat in this chat.")
def chat(url: str, token: str, to_user: str | None, chat_id: int | None) -> None:
    """Talk in one chat: lines you type are sent, messages print as they come."""
    from parley.client import ParleyClient

    if (to_user is None) == (chat_id is None):
        raise click.UsageError("Give exactly one of --to USER or --chat ID.")

    async def run() -> None:
        async with ParleyClient(url, token) as client:
            target = chat_id or (await client.open_private_chat(to_user))["id"]
            async with client.connect() as device:
                click.echo(
                    f"chat #{target}; type a line and press enter, Ctrl-D to leave"
                )
                printer = asyncio.create_task(_print_chat(device, target))
                typist = asyncio.create_task(_type_chat(device, target))
                done, pending = await asyncio.wait(
                    {printer, typist}, return_when=asyncio.FIRST_COMPLETED
                )
                for task in pending:
                    task.cancel()
                for task in done:
                    task.result()

    _run(run())


def _preview(last_message: dict | None) -> str:
    if last_message is None:
        return ""
    images = last_message["image_count"]
    photos = f"[{images} image{'s' if images > 1 else ''}] " if images else ""
    return photos + (last_message["text"] or "")


async def _print_chat(device, chat_id: int) -> None:  # noqa: ANN001
    async for frame in device:
        if frame["type"] == "message" and frame["message"]["chat_id"] == chat_id:
            message = frame["message"]
            images = (
                f" [{len(message['images'])} image(s)]" if message["images"] else ""
            )
            text = message["text"] or ""
            click.echo(f"[{message['seq']}] {message['sender_id']}: {text}{images}")
            if message["sender_id"] != device.welcome["user_id"]:
                await device.read(chat_id, message["seq"])
        elif frame["type"] == "receipt" and frame["chat_id"] == chat_id:
            click.echo(
                f"  ({frame['user_id']} delivered {frame['delivered_seq']}, "
                f"read {frame['read_seq']})"
            )
        elif frame["type"] == "presence":
            state = "online" if frame["online"] else f"last seen {frame['last_seen']}"
            click.echo(f"  ({frame['user_id']} is {state})")


async def _type_chat(device, chat_id: int) -> None:  # noqa: ANN001
    loop = asyncio.get_running_loop()
    lines = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(lines), sys.stdin)
    while line := (await lines.readline()).decode(errors="replace"):
        if line.strip():
            await device.send(chat_id, line.rstrip("\n"))


def _register_design_commands() -> None:
    from parley.bench import bench
    from parley.capacity import capacity

    main.add_command(bench)
    main.add_command(capacity)


_register_design_commands()

if __name__ == "__main__":
    main()
