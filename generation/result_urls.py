"""Which result addresses we fetch or hand to Cloudinary, and fetching them safely.

A result URL comes from fal's answer (or a webhook body), so it is input: pointed at
a loopback, private or cloud-metadata address it would make our worker (or
Cloudinary on our behalf) fetch internal services, and pointed at our own storage
it would copy another user's photo into this user's results. So a result is fetched
only over https, from a host whose every resolved address is public, following at
most MAX_REDIRECTS redirects, each checked again, within a byte and time bound.

`ALLOW_PRIVATE_RESULT_URLS=1` lifts the address and https rules for local fakes and
tests; `check --deploy` warns when it is on with DEBUG off. The offline provider's
own output (our storage, under `offline/`) is accepted only in offline mode.

Known limit: the address is checked when resolved, and the HTTP client resolves the
name again when it connects; a DNS server that answers differently within that
moment (rebinding) is not defended against here. The egress firewall is the place.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urljoin, urlsplit

from django.conf import settings

MAX_REDIRECTS = 3
OFFLINE_PREFIX = "offline/"


class ResultURLRefused(Exception):
    """The address breaks the rules above; the image is treated as missing, never retried."""


def local_name(url: str) -> str | None:
    """The storage name of an offline-provider result at `url`, or None if it is not one."""
    media_url = settings.MEDIA_URL
    if not (settings.OFFLINE_MODE and media_url.startswith("/") and url.startswith(media_url)):
        return None
    name = url[len(media_url) :]
    # Only the offline renderer's own folder, and only plain names in it: no "..", no
    # second slash, no escapes that a storage backend might decode into one.
    if not name.startswith(OFFLINE_PREFIX) or any(part in name for part in ("..", "//", "\\", "%", "?", "#")):
        return None
    return name


def refusal(url: str) -> str | None:
    """Why `url` may not be fetched as a result, judged without the network; None if it may."""
    if not isinstance(url, str) or not url:
        return "empty address"
    if local_name(url) is not None:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return "not a URL"
    allow_private = settings.ALLOW_PRIVATE_RESULT_URLS
    if parts.scheme != "https" and not (allow_private and parts.scheme == "http"):
        return "not https"
    if not parts.hostname:
        return "no host"
    if parts.username or parts.password:
        return "credentials in the address"
    media_url = settings.MEDIA_URL
    if "://" in media_url and url.startswith(media_url):
        return "an address of our own storage"
    own_hosts = {host.lower().lstrip(".") for host in settings.ALLOWED_HOSTS if host != "*"}
    if parts.hostname.lower() in own_hosts and not allow_private:
        return "an address of this site"
    if not allow_private:
        try:
            literal = ipaddress.ip_address(parts.hostname)
        except ValueError:
            literal = None
        if literal is not None and not _public(literal):
            return "not a public address"
    return None


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    # is_global excludes loopback, private (10/8, 172.16/12, 192.168/16, fc00::/7),
    # link-local (169.254/16 with the cloud metadata address, fe80::/10), CGNAT and
    # the documentation and reserved ranges.
    return address.is_global and not address.is_multicast


def check(url: str) -> None:
    """Raise ResultURLRefused unless `url` may be fetched: the rules above, then every
    address its host resolves to must be public."""
    reason = refusal(url)
    if reason:
        raise ResultURLRefused(f"result address refused: {reason}")
    if local_name(url) is not None or settings.ALLOW_PRIVATE_RESULT_URLS:
        return
    parts = urlsplit(url)
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise ResultURLRefused(f"result host does not resolve: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not _public(address):
            raise ResultURLRefused("result host resolves to a non-public address")


@contextmanager
def stream(client: Any, url: str) -> Iterator[Any]:
    """`client.stream("GET", …)` on `url`, following up to MAX_REDIRECTS redirects by
    hand so each hop is checked before it is requested."""
    for _ in range(MAX_REDIRECTS + 1):
        check(url)
        with client.stream("GET", url, timeout=settings.CLOUDINARY_TIMEOUT_SECONDS, follow_redirects=False) as response:
            location = response.headers.get("location")
            if response.status_code in (301, 302, 303, 307, 308) and location:
                url = urljoin(url, location)
                continue
            yield response
            return
    raise ResultURLRefused(f"more than {MAX_REDIRECTS} redirects")


def read_chunks(response: Any, *, chunk_size: int) -> Iterator[bytes]:
    """The body in chunks, refused past MAX_RESULT_BYTES or RESULT_FETCH_SECONDS."""
    deadline = time.monotonic() + settings.RESULT_FETCH_SECONDS
    total = 0
    for chunk in response.iter_bytes(chunk_size):
        total += len(chunk)
        if total > settings.MAX_RESULT_BYTES:
            raise ValueError(f"the result is larger than {settings.MAX_RESULT_BYTES} bytes")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the result took longer than {settings.RESULT_FETCH_SECONDS} s to download")
        yield chunk
