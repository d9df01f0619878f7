"""A small TCP proxy for fault injection: threads and sockets only (no toxiproxy, no tc netem).

It listens on 127.0.0.1 and forwards every connection to one target. Its mode can be switched while
connections are open:

- `pass`: forward both ways.
- `reset`: close every current connection and every new one at once with a TCP RST (SO_LINGER 0), as a
  crashed peer or a dropped NAT entry would.
- `blackhole`: accept, but never forward or answer: open connections stop moving (their bytes wait in the
  kernel's buffers) and new ones are held unconnected, as in a network partition. Switching back to `pass`
  heals the partition: held bytes flow again and held connections reach the target.
- `delay(seconds)`: forward every chunk after that many seconds.

One thread accepts and one thread per connection moves bytes with `select`, so a mode switch acts within
about 50 ms, and `close()` ends every thread.
"""

from __future__ import annotations

import logging
import select
import socket
import struct
import threading
import time

log = logging.getLogger(__name__)

PASS, RESET, BLACKHOLE, DELAY = "pass", "reset", "blackhole", "delay"
_TICK = 0.05


def _rst_close(sock: socket.socket) -> None:
    """Close `sock` so that the peer gets a RST, not a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Link:
    """One client connection and, once connected, its upstream twin; owned by one thread."""

    def __init__(self, proxy: TcpProxy, client: socket.socket) -> None:
        self.proxy, self.client = proxy, client
        self.upstream: socket.socket | None = None
        self.kill = threading.Event()
        self.graceful = False  # the peer closed: pass the FIN on instead of a RST
        self.thread = threading.Thread(target=self._run, name="tcp-proxy-link", daemon=True)

    def _run(self) -> None:
        try:
            if self._hold_while_blackholed() and self._connect():
                self._pump()
        except OSError:
            pass
        finally:
            close = socket.socket.close if self.graceful and not self.kill.is_set() else _rst_close
            for sock in (self.client, self.upstream):
                if sock is not None:
                    try:
                        close(sock)
                    except OSError:
                        pass
            self.proxy._forget(self)

    def _hold_while_blackholed(self) -> bool:
        while self.proxy.mode == BLACKHOLE:
            if self.kill.wait(_TICK):
                return False
        return not self.kill.is_set() and self.proxy.mode != RESET

    def _connect(self) -> bool:
        try:
            self.upstream = socket.create_connection(self.proxy.target, timeout=5)
        except OSError as exc:
            log.info("proxy %s: upstream %s refused: %s", self.proxy.port, self.proxy.target, exc)
            return False
        self.upstream.settimeout(5)
        self.client.settimeout(5)
        return True

    def _pump(self) -> None:
        assert self.upstream is not None
        peer = {self.client: self.upstream, self.upstream: self.client}
        while not self.kill.is_set():
            if self.proxy.mode == BLACKHOLE:
                time.sleep(_TICK)
                continue
            readable, _, _ = select.select(list(peer), [], [], _TICK)
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    self.graceful = True
                    return
                if self.proxy.mode == DELAY and self.proxy.delay_seconds > 0:
                    if self.kill.wait(self.proxy.delay_seconds):
                        return
                if self.kill.is_set():
                    return
                peer[sock].sendall(data)


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target`; switch modes with pass_(), reset(), blackhole(), delay()."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode = PASS
        self.delay_seconds = 0.0
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.settimeout(_TICK * 2)
        self.port = int(self._listener.getsockname()[1])
        self._acceptor = threading.Thread(target=self._accept, name="tcp-proxy-accept", daemon=True)
        self._acceptor.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        """Connections open through the proxy right now."""
        with self._lock:
            return len(self._links)

    def pass_(self) -> None:
        """Forward again (heals a blackhole; new connections after a reset go through)."""
        self.mode, self.delay_seconds = PASS, 0.0

    def reset(self) -> int:
        """RST every open connection now, and every new one until the mode changes; returns how many."""
        self.mode = RESET
        with self._lock:
            links = list(self._links)
        for link in links:
            link.kill.set()
        return len(links)

    def blackhole(self) -> None:
        """Accept but never forward or answer, until the mode changes."""
        self.mode = BLACKHOLE

    def delay(self, seconds: float) -> None:
        """Forward every chunk `seconds` late."""
        self.delay_seconds, self.mode = seconds, DELAY

    def close(self) -> None:
        """Stop accepting, end every connection and join every thread."""
        self._stopped.set()
        self._acceptor.join(timeout=5)
        self._listener.close()
        with self._lock:
            links = list(self._links)
        for link in links:
            link.kill.set()
        for link in links:
            link.thread.join(timeout=10)

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.mode == RESET:
                _rst_close(client)
                continue
            link = _Link(self, client)
            with self._lock:
                self._links.add(link)
            link.thread.start()

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
