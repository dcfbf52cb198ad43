"""A time limit on receiving a request body, so that a client sending it slowly holds a server
thread for a bounded time only.

A server thread reading a body blocks on the socket; a client that sends one byte a second
keeps it there for as long as it likes, and a timeout per read does not help, since each byte
arrives in time. Here the body is read before the application sees it, with a timer beside the
read: when the body is not whole by the deadline, the timer shuts the socket's reading side (the
blocked read returns at once) and the client gets 408. What was read is handed to the
application as the body.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import threading
import time

READ_CHUNK_BYTES = 1 << 16
# Where the servers that run the app put the client's socket in the WSGI environment.
SOCKET_KEYS = ("gunicorn.socket", "werkzeug.socket")


class BodyDeadline:
    """WSGI middleware: a request body not received whole within `seconds` is answered 408.

    A body announced larger than `max_bytes` is left to the application (it refuses it from the
    header, 413, without reading it); a chunked body is read to one byte past `max_bytes`, which
    the application then refuses as well. Requests without a body pass straight through.
    """

    def __init__(self, app, seconds: float, max_bytes: int):
        self.app = app
        self.seconds = seconds
        self.max_bytes = max_bytes

    def __call__(self, environ, start_response):
        sock = next((environ[key] for key in SOCKET_KEYS if key in environ), None)
        wanted = self.body_bytes(environ)
        if sock is None or wanted is None:
            return self.app(environ, start_response)
        started = time.monotonic()
        body = read_before(environ["wsgi.input"], sock, wanted, self.seconds)
        if body is None:
            return self.too_slow(start_response, time.monotonic() - started)
        environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)

    def body_bytes(self, environ) -> int | None:
        """How many bytes to read ahead of the application, None to leave the body to it."""
        length = environ.get("CONTENT_LENGTH", "")
        if length:
            try:
                length = int(length)
            except ValueError:
                return None
            return length if 0 < length <= self.max_bytes else None
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            return self.max_bytes + 1
        return None

    def too_slow(self, start_response, seconds: float):
        message = (
            f"request body not received within {self.seconds:g} s (stopped after {seconds:.1f} s);"
            " send it faster, in smaller parts, or name a file with filepath"
        )
        payload = json.dumps({"error": message}).encode()
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
            ("Connection", "close"),
        ]
        start_response("408 Request Timeout", headers)
        return [payload]


def read_before(stream, sock, wanted: int, seconds: float) -> bytes | None:
    """Up to `wanted` bytes of `stream` (fewer at its end), or None when they took longer than
    `seconds`: then the socket's reading side is shut, which ends a read that is waiting."""
    guard = threading.Lock()
    state = {"done": False, "expired": False}

    def expire():
        with guard:
            if state["done"]:
                return
            state["expired"] = True
        with contextlib.suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RD)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    body = bytearray()
    try:
        while len(body) < wanted:
            part = stream.read(min(READ_CHUNK_BYTES, wanted - len(body)))
            if not part:
                break
            body += part
    except Exception:
        # A read ended by the deadline may raise (a chunked body cut short); anything else
        # (the client went away) is the server's to handle, as it would be without this.
        if not state["expired"]:
            raise
    finally:
        with guard:
            state["done"] = True
        timer.cancel()
    return None if state["expired"] else bytes(body)
