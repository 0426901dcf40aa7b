"""The WebSocket protocol the web runs under uvicorn (``--ws web.ws_protocol:WebSocketProtocol``
in the Procfile): uvicorn's own websockets (sans-I/O) implementation, with a small
kernel send buffer on each upgraded socket.

Why: Linux grows a TCP socket's send buffer up to megabytes while data flows (4 MB by
default). For a client that reads slower than events come, that buffer held seconds
of events where the hub could not see them: every send returned at once, so no socket
ever counted as behind and nothing was conflated; on the bench's 1,000 sockets at 300
events/s the lag grew past 10 s. With a few tens of KB, a slow reader's send waits
(uvicorn pauses writing above its own 64 KiB buffer), and the hub conflates what it
lacks (``web.hub``, ``LAG_LIMIT_S``). Plain HTTP connections (direct play) keep the
kernel's default: only a connection that upgrades to a WebSocket is changed.
"""

from __future__ import annotations

import contextlib
import socket
from asyncio import BaseTransport

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

#: SO_SNDBUF of a WebSocket (the kernel doubles it for its bookkeeping): 64 KB in
#: flight at a 100 ms round trip still carries 600 KB/s, about 900 events a second.
SEND_BUFFER_BYTES = 32 * 1024


class WebSocketProtocol(WebSocketsSansIOProtocol):
    def connection_made(self, transport: BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # a transport without a real socket
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        super().connection_made(transport)
