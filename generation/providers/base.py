"""The provider protocol: what the pipeline needs from a model host.

`fal.py` wraps fal-client (fal.ai's queue); `local.py` is the offline preview
provider used when no FAL_KEY is set. Only `generation.services` (and its helper
modules) import providers; everything else goes through the services.

Every call returns at once: `submit` queues the job and hands back its request id;
`status` reports where it is; `result` is only asked for once `status` says
COMPLETED. Failures raise `ProviderError(permanent=…)`: permanent means "this model
will not do it, try the next one" (a 4xx, a 5xx after the client's own retries, an
error result); transient means "ask again later" (rate limited, unreachable).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class ProviderState(StrEnum):
    IN_QUEUE = "IN_QUEUE"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"


@dataclass(frozen=True)
class ProviderStatus:
    state: ProviderState
    queue_position: int | None = None
    # fal's log lines: [{"message", "level", "timestamp", …}], cumulative for the job.
    logs: list[dict[str, Any]] = field(default_factory=list)
    # Set when the job COMPLETED with an error (fal's `error` field).
    error: str | None = None


class Provider(Protocol):
    name: str

    def submit(self, endpoint: str, payload: dict[str, Any], webhook_url: str | None = None, *, kind: str = "") -> str:
        """Queue a job; return the provider's request id.

        `kind` is the preset kind the job is for; fal ignores it, the offline provider
        uses it to pick a look.
        """
        ...

    def status(self, endpoint: str, request_id: str) -> ProviderStatus: ...

    def result(self, endpoint: str, request_id: str) -> dict[str, Any]:
        """The output JSON of a COMPLETED job."""
        ...

    def cancel(self, endpoint: str, request_id: str) -> None:
        """Ask the provider to stop the job. Best effort: a finished job stays finished."""
        ...
