"""The gunicorn worker class for production: the uvicorn-worker package's `UvicornWorker`,
with one addition at shutdown.

On SIGTERM (a deploy, `docker compose stop`, a systemd restart) uvicorn stops accepting
connections and then waits for every open response to finish, up to gunicorn's
`graceful_timeout`. A live-status stream (`GET /api/generations/{id}/events`, the status
page's card) does not finish by itself for up to LIVE_STREAM_SECONDS, so one open status
page held the process for the whole grace period (70 s by default) and was then cut off
by a kill; with a single web container that was a minute of downtime on every deploy.

So before uvicorn's shutdown waits, every stream of this process is ended the way a
stream ends at LIVE_STREAM_SECONDS: cleanly, after the events already written. The
browser's EventSource (and any SSE client) reconnects with `Last-Event-ID` to a process
that is serving, and misses nothing. Requests that are not streams (a studio call
waiting for its image included) are left to finish as before.
"""

from __future__ import annotations

import socket
import sys

from gunicorn.arbiter import Arbiter
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker as PackageWorker


class _Server(Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        from generation import live  # after Django is set up (the app is loaded by then)

        live.end_streams()
        await super().shutdown(sockets=sockets)


class UvicornWorker(PackageWorker):
    async def _serve(self) -> None:
        # The package's `_serve`, with the server above: the package builds its
        # `uvicorn.Server` inside this method and offers no other way to choose it.
        self.config.app = self.wsgi
        server = _Server(config=self.config)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
