#!/usr/bin/env python
"""The container's HEALTHCHECK: GET /healthz on this container's own port; exit 0 on 200.

Sends a Host header from ALLOWED_HOSTS (Django answers 400 to a host it does not
serve, and the probe connects to 127.0.0.1). Standard library only, no curl in the image.
"""

from __future__ import annotations

import http.client
import os
import sys


def main() -> int:
    hosts = [host.strip() for host in os.environ.get("ALLOWED_HOSTS", "").split(",") if host.strip()]
    host = next((h.lstrip(".") for h in hosts if h != "*"), "localhost")
    connection = http.client.HTTPConnection("127.0.0.1", int(os.environ.get("PORT", "").strip() or 8000), timeout=4)
    try:
        connection.request("GET", "/healthz", headers={"Host": host, "X-Forwarded-Proto": "https"})
        status = connection.getresponse().status
    except OSError as exc:
        print(f"healthz: {exc}", file=sys.stderr)
        return 1
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
