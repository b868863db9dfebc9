"""Error reporting through sentry-sdk, on only when SENTRY_DSN is set.

No personal data by default (`send_default_pii` off: no user emails, IP addresses,
cookies or request bodies), and each event says which release and environment it
came from so a regression can be traced to a deploy. Each event is tagged with the
request id its log lines carry (the web's request, or the one a worker's job came from).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from stefna.logging_json import current_request_id

if TYPE_CHECKING:
    from sentry_sdk.types import Event


def _tag_request_id(event: Event, hint: dict[str, Any]) -> Event:
    """Tag the event with the request id of the log lines around it (see logging_json)."""
    request_id = current_request_id.get()
    if request_id:
        tags = event.setdefault("tags", {})
        if isinstance(tags, dict):
            tags.setdefault("request_id", request_id)
    return event


def sentry_init(*, dsn: str, debug: bool) -> bool:
    """Start sentry-sdk with the Django integration; False when no DSN is set."""
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=dsn,
        integrations=[DjangoIntegration()],
        send_default_pii=False,
        # The image build stamps STEFNA_RELEASE (the git commit); SENTRY_RELEASE wins when set.
        release=os.environ.get("SENTRY_RELEASE") or os.environ.get("STEFNA_RELEASE") or None,
        environment=os.environ.get("SENTRY_ENVIRONMENT") or ("development" if debug else "production"),
        traces_sample_rate=float(os.environ.get("SENTRY_TRACES_SAMPLE_RATE", "") or 0),
        before_send=_tag_request_id,
    )
    return True
