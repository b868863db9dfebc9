"""Pacing: when to ask fal about a job again, from how long its model usually takes.

Asking on a fixed beat either wastes calls (often) or shows results late (seldom). Each
model's time from submission to completion is learned from its recent attempts
(`expected_latency`: the 10th and 90th percentile of the last SAMPLE_SIZE that
succeeded, cached per process for CACHE_SECONDS), and the next check is placed by it
(`next_check_delay`):

- before the early mark (a fast job's finish, less two beats): one check at the mark;
- from there to a slow job's finish (plus some slack): every beat, so a result is seen
  soon after it exists. The beat is NEAR_SECONDS, or shorter (down to TIGHT_NEAR_SECONDS)
  for a model whose fast and slow jobs finish close together: half that spread. Such a
  model's finish is predictable, so the close watch can be shorter and closer for about
  the same number of calls (two before the finish either way), and its result is seen
  sooner (`Expected.beat`);
- far past it, or while fal still has the job in its queue past the early mark: backing
  off, since nothing is imminent.

Every delay is at most max(FAL_POLL_INTERVAL_SECONDS, FAL_POLL_MAX_INTERVAL_SECONDS),
the rhythm within which the UI promises news (queue position, fal's log lines).

With fal's webhooks (FAL_WEBHOOK_BASE_URL set) the callback says when a job is done, and
a check that saw COMPLETED first would fetch and copy the result a second time (the crowd
bench saw every job finished twice, each check racing its callback). Checks then keep the
UI's rhythm and stay out of the stretch where a job is likely finishing, from the close
watch's start to CALLBACK_GRACE_SECONDS after a slow job's finish, whenever the rhythm
allows (`_delay_with_callbacks`); a check after it catches a callback that never came.

An attempt's duration is measured from `started_at` (when fal accepted the
submission) to `finished_at`, which is when we learned fal had finished: the webhook's
arrival, or the status check that saw COMPLETED (`finish.Finished.seen_at`), not when
the images had been copied. Measured that way a late check can only make the next
estimate later by the lateness of that check, and the close watch starts before the
early mark, so the estimate settles near fal's real time instead of drifting up.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from typing import cast

from django.conf import settings
from django.utils import timezone

from ..models import Attempt
from ..providers import ProviderState

SAMPLE_SIZE = 50
CACHE_SECONDS = 30.0
# With fewer successes than this, what was learned is read again after SHORT_CACHE_SECONDS.
MIN_SAMPLE = 10
SHORT_CACHE_SECONDS = 3.0
# Before any attempt of a model has succeeded.
DEFAULT_EXPECTED_SECONDS = 8.0
# How often a job is checked while it is likely to finish (the beat): this often for a
# model whose times spread, down to TIGHT_NEAR_SECONDS for one whose times hardly do.
NEAR_SECONDS = 0.25
TIGHT_NEAR_SECONDS = 0.1
# The close watch begins this many beats before a fast job's finish.
LEAD_BEATS = 2
LEAD_SECONDS = LEAD_BEATS * NEAR_SECONDS  # (for a model whose times spread)
# With webhooks: how long after a slow job's finish a callback may take before a status
# check looks for itself.
CALLBACK_GRACE_SECONDS = 1.0


@dataclass(frozen=True)
class Expected:
    """Seconds from submission to completion for one model: a fast job and a slow one."""

    early: float
    late: float

    @property
    def beat(self) -> float:
        """Seconds between checks in the close watch: half the spread between a fast and a
        slow job, within [TIGHT_NEAR_SECONDS, NEAR_SECONDS]."""
        return min(NEAR_SECONDS, max(TIGHT_NEAR_SECONDS, (self.late - self.early) / 2))

    @property
    def lead(self) -> float:
        """How long before a fast job's finish the close watch begins."""
        return LEAD_BEATS * self.beat


_learned: dict[str, tuple[float, Expected]] = {}
_learned_lock = threading.Lock()


def _quantile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def expected_latency(model: str) -> Expected:
    """How long `model` takes, from its last SAMPLE_SIZE succeeded attempts (cached per
    process for CACHE_SECONDS: every pool thread reads it for every check)."""
    now = timezone.now().timestamp()
    with _learned_lock:
        cached = _learned.get(model)
    if cached is not None and now - cached[0] < CACHE_SECONDS:
        return cached[1]
    rows = (
        Attempt.objects.filter(model=model, status=Attempt.Status.SUCCEEDED, finished_at__isnull=False)
        .order_by("-started_at")
        .values_list("started_at", "finished_at")[:SAMPLE_SIZE]
    )
    # finished_at__isnull=False above: every row has its finish time.
    durations = sorted(max(0.0, (cast(dt.datetime, finished) - started).total_seconds()) for started, finished in rows)
    if durations:
        expected = Expected(early=_quantile(durations, 0.1), late=_quantile(durations, 0.9))
    else:
        expected = Expected(early=DEFAULT_EXPECTED_SECONDS, late=DEFAULT_EXPECTED_SECONDS)
    # Until a model has a real sample, look again soon: the first results teach it.
    fetched_at = now if len(durations) >= MIN_SAMPLE else now - CACHE_SECONDS + SHORT_CACHE_SECONDS
    with _learned_lock:
        _learned[model] = (fetched_at, expected)
    return expected


def forget_latencies() -> None:
    """Drop what this process learned (the next check reads the attempts again)."""
    with _learned_lock:
        _learned.clear()


def _ceiling() -> float:
    return max(0.0, settings.FAL_POLL_INTERVAL_SECONDS, settings.FAL_POLL_MAX_INTERVAL_SECONDS)


def next_check_delay(*, model: str, state: ProviderState, elapsed: float) -> float:
    """Seconds until the next status check of an attempt of `model`, `elapsed` seconds
    after it was submitted, which fal last reported in `state`."""
    ceiling = _ceiling()
    expected = expected_latency(model)
    near = min(expected.beat, ceiling)
    if settings.FAL_WEBHOOK_BASE_URL:
        return _delay_with_callbacks(expected, elapsed=elapsed, ceiling=ceiling, near=near)
    until_early = expected.early - expected.lead - elapsed
    if until_early > near:
        delay = until_early
    elif state == ProviderState.IN_QUEUE:
        # Not started yet although a fast job would be done by now: its run is still to
        # come, so nothing is imminent.
        delay = max(near, expected.early / 4)
    elif elapsed <= expected.late + max(1.0, expected.late / 2):
        delay = near
    else:  # far past a slow job's time: back off
        delay = max(near, (elapsed - expected.late) / 2)
    return min(ceiling, delay)


def _delay_with_callbacks(expected: Expected, *, elapsed: float, ceiling: float, near: float) -> float:
    """The next check's delay when fal calls back: on the UI's rhythm, out of the stretch
    where the callback is due (see the module's docstring)."""
    quiet_from = expected.early - expected.lead
    quiet_until = expected.late + CALLBACK_GRACE_SECONDS
    if elapsed + ceiling <= quiet_from or elapsed >= quiet_until:
        delay = ceiling
    elif elapsed < quiet_from:  # the next beat would fall in the stretch: look just before it
        delay = quiet_from - elapsed
    elif quiet_until - elapsed <= ceiling:  # in it: look again once the callback is overdue
        delay = quiet_until - elapsed
    else:  # a stretch longer than the rhythm (a model whose times vary widely): keep the rhythm
        delay = ceiling
    return max(near, delay)


def first_check_delay(model: str) -> float:
    """Seconds from a submission to its first status check."""
    return next_check_delay(model=model, state=ProviderState.IN_QUEUE, elapsed=0.0)
