"""A free TCP port on 127.0.0.1, for a server a test starts (the fakes, nginx, a raw socket
server), and waiting until such a server answers."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(base: str, process: subprocess.Popen[bytes], log: Path, *, timeout: float = 60) -> None:
    """Until `base` answers /healthz (any status: the server is up). Fails with the server's
    log when it exits first or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited:\n{log.read_text()}")
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=2)  # noqa: S310 - our own server
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"the server did not answer within {timeout:.0f} s:\n{log.read_text()}")
