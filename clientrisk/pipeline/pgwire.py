"""The one small query the quiet tick asks PostgreSQL, over its wire protocol (version 3.0) with
the standard library alone.

A quiet tick with a PostgreSQL source asks the newest new-rows value and compares it with what
the last full decision got. Importing psycopg costs about ten starts of Python (it imports
asyncio, logging, typing and more); this module speaks just enough of the protocol for that one
query: a TCP or Unix-socket connection, TLS when the server offers it (or when `sslmode` is
`require`), trust, password, MD5 or SCRAM-SHA-256 authentication, and one simple query whose
first cell comes back as the server's text. Anything else (another `sslmode`, another
authentication, an error) raises ProbeError, and the tick decides in full.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct

__all__ = ["ProbeError", "first_cell"]

PROTOCOL_VERSION = 196608  # 3.0
SSL_REQUEST = 80877103


class ProbeError(Exception):
    """The query could not be asked this way (the full decision then runs)."""


def first_cell(params: dict, password: str | None, sql: str, timeout: float) -> str | None:
    """The first column of the first row of `sql`, as PostgreSQL's text (None for NULL).

    Args:
        params: host, port, dbname, user, sslmode (libpq's names; missing ones as libpq's
            defaults: the local socket, 5432, the user's name).
        timeout: seconds for connecting and for each answer; also the statement time-out.
    """
    connection = _connect(params, timeout)
    connection.settimeout(timeout + 2)  # the server's own statement time-out answers first
    try:
        user = params.get("user") or _os_user()
        startup = {
            "user": user,
            "database": params.get("dbname") or user,
            "client_encoding": "UTF8",
            "options": f"-c statement_timeout={round(timeout * 1000)}",
            "application_name": "clientrisk quiet tick",
        }
        body = b"".join(f"{key}\0{value}\0".encode() for key, value in startup.items()) + b"\0"
        connection.sendall(struct.pack("!ii", len(body) + 8, PROTOCOL_VERSION) + body)
        _authenticate(connection, user, password)
        _send(connection, b"Q", sql.encode() + b"\0")
        return _answer(connection)
    except (OSError, struct.error, UnicodeError, ValueError, IndexError) as error:
        raise ProbeError(str(error)) from None
    finally:
        with contextlib.suppress(OSError):
            _send(connection, b"X", b"")
        connection.close()


def _os_user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def _connect(params: dict, timeout: float):
    host = params.get("host") or next(
        (folder for folder in ("/var/run/postgresql", "/tmp") if os.path.isdir(folder)), "/tmp"
    )
    port = int(params.get("port") or 5432)
    sslmode = params.get("sslmode") or "prefer"
    if sslmode not in ("disable", "allow", "prefer", "require"):
        raise ProbeError(f"sslmode {sslmode} is not spoken here")
    try:
        if host.startswith("/"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(os.path.join(host, f".s.PGSQL.{port}"))
            return sock  # no TLS over a local socket, as libpq
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as error:
        raise ProbeError(f"cannot connect: {error}") from None
    if sslmode in ("disable", "allow"):
        return sock
    sock.sendall(struct.pack("!ii", 8, SSL_REQUEST))
    offered = sock.recv(1)
    if offered == b"S":
        import ssl

        context = ssl.create_default_context()
        context.check_hostname = False  # as libpq's require and prefer: encrypted, not verified
        context.verify_mode = ssl.CERT_NONE
        return context.wrap_socket(sock, server_hostname=host)
    if sslmode == "require":
        sock.close()
        raise ProbeError("the server does not offer TLS")
    return sock


def _send(connection, kind: bytes, body: bytes) -> None:
    connection.sendall(kind + struct.pack("!i", len(body) + 4) + body)


def _receive(connection) -> tuple[bytes, bytes]:
    head = _exactly(connection, 5)
    length = struct.unpack("!i", head[1:])[0]
    body = _exactly(connection, length - 4)
    if head[:1] == b"E":
        raise ProbeError(_error_text(body))
    return head[:1], body


def _exactly(connection, count: int) -> bytes:
    chunks, left = [], count
    while left:
        chunk = connection.recv(left)
        if not chunk:
            raise ProbeError("the server closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _error_text(body: bytes) -> str:
    fields = {part[:1]: part[1:].decode("utf-8", "replace") for part in body.split(b"\0") if part}
    return fields.get(b"M", "error")


def _authenticate(connection, user: str, password: str | None) -> None:
    scram = None
    while True:
        kind, body = _receive(connection)
        if kind == b"Z":
            return  # ready for the query
        if kind != b"R":
            continue  # parameter status, backend key data, notices
        code = struct.unpack("!i", body[:4])[0]
        if code == 0:
            continue
        if password is None:
            raise ProbeError("the server asks for a password")
        if code == 3:
            _send(connection, b"p", password.encode() + b"\0")
        elif code == 5:
            import hashlib

            inner = hashlib.md5((password + user).encode()).hexdigest().encode()
            outer = hashlib.md5(inner + body[4:8]).hexdigest()
            _send(connection, b"p", b"md5" + outer.encode() + b"\0")
        elif code == 10 and b"SCRAM-SHA-256\0" in body[4:]:
            scram = _Scram(password)
            first = scram.client_first()
            payload = b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first
            _send(connection, b"p", payload)
        elif code == 11 and scram is not None:
            _send(connection, b"p", scram.client_final(body[4:]))
        elif code == 12 and scram is not None:
            scram.check_server(body[4:])
        else:
            raise ProbeError(f"authentication {code} is not spoken here")


class _Scram:
    """SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL uses it (no channel binding)."""

    def __init__(self, password: str) -> None:
        import base64

        self.password = password.encode()
        self.nonce = base64.b64encode(os.urandom(18)).decode()  # as secrets.token_bytes
        self.first_bare = f"n=,r={self.nonce}"
        self.server_signature = b""

    def client_first(self) -> bytes:
        return f"n,,{self.first_bare}".encode()

    def client_final(self, server_first: bytes) -> bytes:
        import base64
        import hashlib
        import hmac

        text = server_first.decode()
        fields = dict(part.split("=", 1) for part in text.split(","))
        if not fields["r"].startswith(self.nonce):
            raise ProbeError("the server's SCRAM nonce does not continue ours")
        salted = hashlib.pbkdf2_hmac(
            "sha256", self.password, base64.b64decode(fields["s"]), int(fields["i"])
        )
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={fields['r']}"
        message = f"{self.first_bare},{text},{without_proof}".encode()
        signature = hmac.digest(stored_key, message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        self.server_signature = hmac.digest(server_key, message, "sha256")
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def check_server(self, server_final: bytes) -> None:
        import base64
        import hmac

        fields = dict(part.split("=", 1) for part in server_final.decode().split(","))
        if not hmac.compare_digest(base64.b64decode(fields.get("v", "")), self.server_signature):
            raise ProbeError("the server's SCRAM signature is wrong")


def _answer(connection) -> str | None:
    """The first cell of the first data row, reading on to ReadyForQuery."""
    cell, seen = None, False
    while True:
        kind, body = _receive(connection)
        if kind == b"D" and not seen:
            seen = True
            count = struct.unpack("!h", body[:2])[0]
            if count:
                length = struct.unpack("!i", body[2:6])[0]
                cell = None if length < 0 else body[6 : 6 + length].decode("utf-8")
        elif kind == b"Z":
            return cell
