"""Running the application under uvicorn, as `jobctl serve` does."""

from __future__ import annotations

import socket

import uvicorn

from .app import create_app
from .settings import WebSettings


class Server(uvicorn.Server):
    """uvicorn's, which also prints where it listens once it does, on stdout (with port 0, the
    port it was given): what a script or a test waits for."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            for url in self.urls():
                print(f"listening on {url} (API docs: {url}/docs)", flush=True)

    def urls(self) -> list[str]:
        found = []
        for server in self.servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                found.append(f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}")
        return found


def serve(settings: WebSettings, *, host: str, port: int) -> None:
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        # Our logging (configured by jobctl), and our access log, which never prints a query
        # string: uvicorn's would print /login's token.
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    Server(config).run()
