"""The fault-injection proxy itself: each mode does what the scenarios rely on, and it stops cleanly."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.faults


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A TCP echo server on 127.0.0.1 (one thread per connection), stopped after the test."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stopped = threading.Event()

    def echo(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(0.1)
            while not stopped.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    def serve() -> None:
        while not stopped.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stopped.set()
    thread.join(5)
    listener.close()


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.settimeout(2)
    return sock


def _roundtrip(sock: socket.socket, payload: bytes = b"ping") -> bytes:
    sock.sendall(payload)
    return sock.recv(65536)


def test_pass_and_delay_forward_every_byte(tcp_proxy, echo_port) -> None:
    proxy = tcp_proxy("127.0.0.1", echo_port)
    with _connect(proxy.port) as sock:
        assert _roundtrip(sock) == b"ping"
        proxy.delay(0.3)
        started = time.monotonic()
        assert _roundtrip(sock, b"slow") == b"slow"
        assert time.monotonic() - started >= 0.5, "each direction waits its delay"
        proxy.pass_()
        started = time.monotonic()
        assert _roundtrip(sock) == b"ping"
        assert time.monotonic() - started < 0.3


def test_reset_sends_rst_to_open_and_new_connections_then_pass_heals(tcp_proxy, echo_port) -> None:
    proxy = tcp_proxy("127.0.0.1", echo_port)
    with _connect(proxy.port) as sock:
        assert _roundtrip(sock) == b"ping"
        assert proxy.reset() == 1
        with pytest.raises(ConnectionResetError):
            for _ in range(20):  # the RST arrives within a tick
                _roundtrip(sock)
                time.sleep(0.05)
    with pytest.raises(ConnectionResetError):  # at connect() or at the first read, whichever sees the RST
        with _connect(proxy.port) as sock:
            _roundtrip(sock)
    proxy.pass_()
    with _connect(proxy.port) as sock:
        assert _roundtrip(sock) == b"ping"


def test_blackhole_accepts_but_never_answers_until_healed(tcp_proxy, echo_port) -> None:
    proxy = tcp_proxy("127.0.0.1", echo_port)
    with _connect(proxy.port) as old:
        assert _roundtrip(old) == b"ping"
        proxy.blackhole()
        old.settimeout(0.5)
        with pytest.raises(TimeoutError):
            _roundtrip(old, b"held")
        with _connect(proxy.port) as new:
            new.settimeout(0.5)
            with pytest.raises(TimeoutError):
                _roundtrip(new, b"waiting")
            proxy.pass_()
            new.settimeout(2)
            assert new.recv(65536) == b"waiting", "held bytes flow once the partition heals"
        old.settimeout(2)
        assert old.recv(65536) == b"held"


def test_close_ends_every_connection_and_thread(tcp_proxy, echo_port) -> None:
    proxy = tcp_proxy("127.0.0.1", echo_port)
    socks = [_connect(proxy.port) for _ in range(3)]
    for sock in socks:
        assert _roundtrip(sock) == b"ping"
    proxy.close()
    assert proxy.connections == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("tcp-proxy") and t.is_alive()]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
    for sock in socks:
        sock.close()
