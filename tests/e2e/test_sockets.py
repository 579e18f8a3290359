"""Frames written straight to the socket, under a real Uvicorn and a real client.

The gateway finds the socket through Uvicorn's protocol object, which is not
a public interface: if an upgrade of Uvicorn changed it, Parley would fall
back to the slower ASGI path without a word. These tests say so at once.
"""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn
from websockets.asyncio.client import connect

from parley.server.sockets import Socket, SocketGone, Sockets
from tests.support import free_port


async def _serve(handler) -> tuple[uvicorn.Server, asyncio.Task, int]:  # noqa: ANN001
    """Uvicorn on a free port, accepting every WebSocket and handing
    ``handler`` the socket found under it."""

    async def app(scope, receive, send):  # noqa: ANN001
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        await handler(Socket.under(send, Sockets()), receive, send)

    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, ws="websockets-sansio", log_config=None
    )
    server = uvicorn.Server(config)
    running = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    return server, running, port


async def _stop(server: uvicorn.Server, running: asyncio.Task) -> None:
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(running, 10)


async def test_frames_held_for_the_turn_and_written_at_once_arrive_in_order():
    found: list[Socket | None] = []

    async def handler(socket, receive, send):  # noqa: ANN001
        found.append(socket)
        socket.write_soon(b'{"n":1}')
        socket.write_soon(b'{"n":2}')
        socket.write(b'{"n":3}')
        socket.write_soon('{"n":4,"text":"h\u00e9"}'.encode())
        await asyncio.sleep(0.05)
        await send({"type": "websocket.close", "code": 1000})

    server, running, port = await _serve(handler)
    try:
        async with connect(f"ws://127.0.0.1:{port}/") as client:
            frames = [await client.recv() for _ in range(4)]
    finally:
        await _stop(server, running)

    assert found and isinstance(found[0], Socket)
    assert frames == ['{"n":1}', '{"n":2}', '{"n":3}', '{"n":4,"text":"hé"}']


async def test_a_socket_closed_by_the_peer_refuses_frames():
    outcome: list[object] = []

    async def handler(socket, receive, send):  # noqa: ANN001
        while (await receive())["type"] != "websocket.disconnect":
            pass
        outcome.append(socket.ready)
        try:
            socket.write(b"{}")
        except SocketGone:
            outcome.append("gone")

    server, running, port = await _serve(handler)
    try:
        async with connect(f"ws://127.0.0.1:{port}/"):
            pass
        for _ in range(100):
            if outcome:
                break
            await asyncio.sleep(0.02)
    finally:
        await _stop(server, running)

    assert outcome == [False, "gone"]
