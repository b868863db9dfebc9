"""A TCP proxy in front of the test's PostgreSQL that can fail one kind of connection.

It reads each connection's startup message (answering SSL and GSS encryption requests
"no", so the message comes in clear) and, for connections whose `application_name` is
`target` (the live listener's "stefna-live", the worker's wake listener's "stefna-worker"),
does what the test says: forward, refuse (close at once, as a server that is down), or
black-hole (keep the connection open and forward nothing either way, as a server gone
without a RST), or hold what the server sends it until `release()` sends it all in one
write. Every other connection is
forwarded untouched, so the rest of the app keeps its database.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import pytest
from django.db import DEFAULT_DB_ALIAS, connections

Mode = Literal["forward", "refuse", "black_hole", "hold"]

_SSL_REQUEST, _GSSENC_REQUEST = 80877103, 80877104


@contextmanager
def proxy_in_front_of_the_database(*, target: str) -> Iterator[PostgresProxy]:
    """Every new connection made meanwhile goes through a proxy; only `target`'s
    (application_name) is ever refused, black-holed or held. Skips off PostgreSQL."""
    settings_dict = connections[DEFAULT_DB_ALIAS].settings_dict
    if connections[DEFAULT_DB_ALIAS].vendor != "postgresql":
        pytest.skip("PostgreSQL only: a LISTEN connection")
    host = settings_dict["HOST"] or "127.0.0.1"
    if host.startswith("/"):
        pytest.skip("the proxy speaks TCP; the test database is on a Unix socket")
    saved = settings_dict["HOST"], settings_dict["PORT"]
    proxy = PostgresProxy((host, int(settings_dict["PORT"] or 5432)), target=target)
    settings_dict["HOST"], settings_dict["PORT"] = "127.0.0.1", str(proxy.port)
    try:
        yield proxy
    finally:
        settings_dict["HOST"], settings_dict["PORT"] = saved
        proxy.close()


def _read_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed during the startup message")
        data += chunk
    return data


class PostgresProxy:
    def __init__(self, upstream: tuple[str, int], *, target: str) -> None:
        self.upstream, self.target = upstream, target
        self.mode: Mode = "forward"
        self._lock = threading.Lock()
        self._target_sockets: list[socket.socket] = []
        self._all_sockets: list[socket.socket] = []
        self._held: dict[socket.socket, bytearray] = {}
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="pg-proxy").start()

    def cut_targets(self) -> None:
        """Close the target's open connections now (as a database restart does)."""
        with self._lock:
            sockets, self._target_sockets = self._target_sockets, []
        for sock in sockets:
            _shut(sock)

    def held(self) -> bytes:
        """What the server sent the target since `mode = "hold"`, not passed on yet."""
        with self._lock:
            return b"".join(self._held.values())

    def release(self) -> None:
        """Forward again, after sending what was held (each connection's in one write)."""
        with self._lock:
            self.mode = "forward"
            held, self._held = self._held, {}
            for sink, data in held.items():
                sink.sendall(data)

    def close(self) -> None:
        self._closed = True
        self._server.close()
        with self._lock:
            sockets = list(self._all_sockets)
        for sock in sockets:
            _shut(sock)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            self._all_sockets.append(client)
        try:
            while True:
                (length,) = struct.unpack("!I", _read_exactly(client, 4))
                body = _read_exactly(client, length - 4)
                (code,) = struct.unpack("!I", body[:4])
                if code in (_SSL_REQUEST, _GSSENC_REQUEST):
                    client.sendall(b"N")
                    continue
                break
        except (ConnectionError, OSError):
            client.close()
            return
        words = body[4:].split(b"\0")
        params = dict(zip(words[0::2], words[1::2], strict=False))
        is_target = params.get(b"application_name") == self.target.encode()
        if is_target:
            with self._lock:
                mode = self.mode
                if mode != "refuse":
                    self._target_sockets.append(client)
            if mode == "refuse":
                client.close()
                return
            if mode == "black_hole":
                return  # open, and nothing ever comes back
        upstream = socket.create_connection(self.upstream)
        with self._lock:
            self._all_sockets.append(upstream)
        upstream.sendall(struct.pack("!I", length) + body)
        pumps = [(client, upstream), (upstream, client)]
        for source, sink in pumps:
            to_target = is_target and sink is client
            threading.Thread(target=self._pump, args=(source, sink, is_target, to_target), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, is_target: bool, to_target: bool) -> None:
        try:
            while data := source.recv(65536):
                if is_target and self.mode == "black_hole":
                    continue  # swallowed: the other side waits for ever
                if to_target:
                    with self._lock:  # never past what `release` is sending
                        if self.mode == "hold":
                            self._held.setdefault(sink, bytearray()).extend(data)
                        else:
                            sink.sendall(data)
                    continue
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    # shutdown() first: a close() alone does not wake a thread blocked in recv() on it.
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
