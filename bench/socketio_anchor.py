"""The WebSocket fan-out bench's anchor: a Flask-SocketIO server on gevent
(``async_mode="gevent"``, gevent's pywsgi server, WebSockets through simple-websocket,
which accepts permessage-deflate) that broadcasts job events to every connected
Socket.IO client.

Run as ``python -m bench.socketio_anchor PORT`` (a child process of the bench). It has
no stream to read: ``POST /emit?rate=R&seconds=D`` makes it ``socketio.emit`` an event
``R`` times a second for ``D`` seconds, each one the same shape and size as vidfleet's
(:func:`bench.ws_fanout.make_event`), stamped with its creation time. The answer comes
when the run is over: ``{"emitted": n, "seconds": s}``.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
from flask import Flask, jsonify, request  # noqa: E402
from flask_socketio import SocketIO  # noqa: E402

from bench.ws_fanout import make_event  # noqa: E402


def create() -> tuple[Flask, SocketIO]:
    app = Flask(__name__)
    socketio = SocketIO(app, async_mode="gevent", cors_allowed_origins="*", logger=False)

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify(ok=True)

    @app.post("/emit")
    def emit() -> Any:
        rate = float(request.args["rate"])
        seconds = float(request.args["seconds"])
        trial = request.args["trial"]
        total = int(rate * seconds)
        started = time.monotonic()
        for seq in range(total):
            due = started + seq / rate
            delay = due - time.monotonic()
            if delay > 0:
                gevent.sleep(delay)
            socketio.emit("job", make_event(seq, time.time() * 1000, trial))
        return jsonify(emitted=total, seconds=time.monotonic() - started)

    return app, socketio


def main() -> None:
    port = int(sys.argv[1])
    app, socketio = create()
    socketio.run(app, host="127.0.0.1", port=port, log_output=False)


if __name__ == "__main__":
    main()
