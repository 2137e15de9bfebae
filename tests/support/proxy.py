"""A TCP proxy between processes and a server (PostgreSQL, Redis) that a test or the chaos run
cuts: the network between them made to fail for real, from outside the processes.

Two ways to cut it:
  * partition (`cut()`): the connections stay open but nothing crosses them, and new ones are
    accepted and then hang, as behind a firewall that drops packets. When the partition heals,
    the connections that lived through it are closed, as their peers' timeouts would have done.
  * refusal (`cut(refuse=True)`): every connection is closed and new ones are refused, as when
    the server is down.

Usage: `with Proxy(("127.0.0.1", 5432)) as proxy: ... proxy.port ... proxy.cut() ... proxy.heal()`
"""

from __future__ import annotations

import select
import socket
import threading
from types import TracebackType

_POLL_S = 0.05


class _Link:
    """One client connection and, unless it arrived during a partition, its upstream one."""

    def __init__(self, client: socket.socket, upstream: socket.socket | None) -> None:
        self.client = client
        self.upstream = upstream
        self.closed = threading.Event()

    def close(self) -> None:
        self.closed.set()
        for sock in (self.client, self.upstream):
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()


class Proxy:
    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = target
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._flowing = threading.Event()
        self._flowing.set()
        self._refusing = False
        self._listener: socket.socket | None = None
        self._stopped = threading.Event()

    def __enter__(self) -> Proxy:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def url_for(self, url: str) -> str:
        """`url` (postgresql://... or redis://...) with this proxy's address instead of the server's."""
        from urllib.parse import urlparse, urlunparse

        parts = urlparse(url)
        user = f"{parts.username}@" if parts.username else ""
        return urlunparse(parts._replace(netloc=f"{user}{self.host}:{self.port}"))

    def start(self) -> None:
        self._listen()
        threading.Thread(target=self._accept, name=f"proxy-{self.port}", daemon=True).start()

    def cut(self, *, refuse: bool = False) -> None:
        with self._lock:
            self._flowing.clear()
            if refuse:
                self._refusing = True
                self._close_listener()
                self._close_links()

    def heal(self) -> None:
        with self._lock:
            # The connections that lived through the cut end now, as their peers' timeouts would have.
            self._close_links()
            if self._refusing:
                self._refusing = False
                self._listen()
            self._flowing.set()

    def close(self) -> None:
        self._stopped.set()
        with self._lock:
            self._close_listener()
            self._close_links()
        self._flowing.set()

    def connections(self) -> int:
        with self._lock:
            return sum(1 for link in self._links if not link.closed.is_set())

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener

    def _close_listener(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _close_links(self) -> None:
        for link in self._links:
            link.close()
        self._links = []

    def _accept(self) -> None:
        while not self._stopped.is_set():
            listener = self._listener
            if listener is None:
                self._stopped.wait(_POLL_S)
                continue
            try:
                ready, _, _ = select.select([listener], [], [], _POLL_S)
                if not ready:
                    continue
                client, _ = listener.accept()
            except (OSError, ValueError):  # closed under us by cut(refuse=True) or close()
                continue
            with self._lock:
                if self._refusing or self._stopped.is_set():
                    client.close()
                    continue
                upstream = None
                if self._flowing.is_set():
                    try:
                        upstream = socket.create_connection(self.target, timeout=5)
                    except OSError:
                        client.close()
                        continue
                link = _Link(client, upstream)
                self._links.append(link)
            if upstream is not None:
                for source, sink in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(link, source, sink), daemon=True).start()
            # A connection that arrives during a partition is held, silent, until the heal closes it.

    def _pump(self, link: _Link, source: socket.socket, sink: socket.socket) -> None:
        try:
            while not link.closed.is_set():
                if not self._flowing.is_set():
                    # Partitioned: nothing is read, nothing crosses.
                    self._flowing.wait(_POLL_S)
                    continue
                ready, _, _ = select.select([source], [], [], _POLL_S)
                if not ready or not self._flowing.is_set():
                    continue
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            link.close()
