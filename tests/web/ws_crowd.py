"""A crowd of WebSocket clients in a process of its own, for overload tests.

``CROWD_TOKEN=… python -m tests.web.ws_crowd PORT N`` opens N sockets to ``ws://127.0.0.1:PORT/ws``,
subscribes each to every job, prints ``ready`` once all are subscribed, and then reads
until a line arrives on stdin; it prints one JSON line, ``{"open": sockets still open,
"closed": {code: count}, "events": [events received by each socket]}``, and exits.
A process of its own so that its reading does not share the test's GIL.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from typing import cast

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed


async def main(port: int, count: int, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    sockets: list[ClientConnection] = []
    for _ in range(count):
        ws = await connect(
            f"ws://127.0.0.1:{port}/ws",
            additional_headers=headers,
            compression=None,
            ping_interval=None,
            max_size=None,
        )
        await ws.send(json.dumps({"action": "subscribe", "jobs": ["*"], "since": None}))
        sockets.append(ws)
    events = [0] * count
    closed: Counter[int] = Counter()

    async def read(index: int, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                # Counted, not parsed: the crowd must cost less than the server it loads.
                events[index] += cast(str, message).count('{"type":"job"')
        except ConnectionClosed:
            pass
        closed[ws.close_code or 0] += 1

    readers = [asyncio.create_task(read(i, ws)) for i, ws in enumerate(sockets)]
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    still_open = sum(1 for task in readers if not task.done())
    print(json.dumps({"open": still_open, "closed": closed, "events": events}), flush=True)
    for ws in sockets:
        ws.transport.abort()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), os.environ["CROWD_TOKEN"]))
