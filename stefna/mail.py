"""Emails a task owes (the owner's "your image is ready", the buyer's receipt): sent at
least once, tried again later when the mail server refuses, within bounds.

How generation/notify.py and credits/payments/purchases.py send one:
1. claim it (`claim`): a conditional update of the row's stamp (`notified_at`, `receipt_sent_at`)
   from what this attempt expects (NULL for the first, the previous attempt's claim
   after that) to the time of this claim, and in the same transaction queue the next
   attempt, `RETRY_DELAYS` later, expecting this claim;
2. send it (`send_owed`);
3. sent, or refused for good: move the stamp on past the claim (`Claim.settle`), so that the
   queued attempt finds it no longer its claim and does nothing.
Refused for now (a 4xx, the connection refused, a timeout) or the process killed while
sending: the stamp stays the claim and the queued attempt sends it again. django.tasks do
not retry a task that raised, so before this a mail server's refusal lost the email.
At least once, on purpose: a process killed after the server took the message but before
step 3 sends it twice when the next attempt runs; better than losing it. After the last
attempt the "given up" error line is what an operator alerts on.
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Model, Q, QuerySet
from django.utils import timezone

# 1 min, 5 min, 30 min, 2 h, 6 h, then a day: seven tries over about 32 hours.
RETRY_DELAYS = (60, 5 * 60, 30 * 60, 2 * 3600, 6 * 3600, 24 * 3600)


@dataclass(frozen=True)
class Claim:
    """An email this attempt has claimed (step 1): `field` is its stamp on `row`."""

    row: QuerySet[Any]
    field: str
    claimed_at: dt.datetime
    next_at: dt.datetime | None  # when the next attempt runs; None after the last
    attempt: int

    def settle(self) -> None:
        """Step 3: move the stamp past this claim, so the queued attempt does nothing."""
        self.row.filter(**{self.field: self.claimed_at}).update(**{self.field: settled(self.claimed_at)})


def claim(
    model: type[Model],
    pk: object,
    *,
    field: str,
    owed: Q | None = None,
    attempt: int,
    claim: str,
    task: Any,
    arguments: dict[str, str],
) -> Claim | None:
    """Step 1: claim the email owed on `model`'s row `pk` (while `owed` holds), and queue
    its next attempt, `task` called with `arguments`, in the same transaction. `attempt`
    and `claim` are the task's own (0 and "" for the first attempt). None when the stamp
    is not what this attempt expects (sent already, or another attempt's to send) or the
    email is no longer owed."""
    row = model._default_manager.filter(pk=pk)
    expected = claim_of(claim)
    claimed_at = timezone.now()
    next_at = retry_at(attempt=attempt, claimed_at=claimed_at)
    with transaction.atomic():
        if not row.filter(owed or Q(), **{field: expected}).update(**{field: claimed_at}):
            return None
        if next_at is not None:
            task.using(run_after=next_at).enqueue(**arguments, attempt=attempt + 1, claim=claimed_at.isoformat())
    return Claim(row=row, field=field, claimed_at=claimed_at, next_at=next_at, attempt=attempt)


def claim_of(claim: str) -> dt.datetime | None:
    """The claim an attempt expects to find ("" for the first attempt: none yet)."""
    return dt.datetime.fromisoformat(claim) if claim else None


def retry_at(*, attempt: int, claimed_at: dt.datetime) -> dt.datetime | None:
    """When the attempt after `attempt` (0 for the first) runs; None after the last."""
    if attempt >= len(RETRY_DELAYS):
        return None
    return claimed_at + dt.timedelta(seconds=RETRY_DELAYS[attempt])


def settled(claimed_at: dt.datetime) -> dt.datetime:
    """The stamp once sent: later than the claim, so a queued attempt no longer matches it."""
    return max(timezone.now(), claimed_at + dt.timedelta(microseconds=1))


def refused_for_good(error: BaseException) -> bool:
    """A 5xx to the recipient (no such mailbox): asking again tomorrow will not help."""
    return (
        isinstance(error, smtplib.SMTPRecipientsRefused)
        and bool(error.recipients)
        and all(code >= 500 for code, _message in error.recipients.values())
    )


def send_owed(owed: Claim, send: Callable[[], None], *, what: str, logger: logging.Logger) -> bool:
    """Send a claimed email (step 2) and settle it (step 3) unless it is to be tried
    again. True when it was sent."""
    try:
        send()
    except Exception as error:
        if refused_for_good(error):
            owed.settle()
            logger.error("%s was refused for good (%s); not tried again", what, error)
        elif owed.next_at is None:
            logger.error("%s failed %s times, the last with %r; given up", what, owed.attempt + 1, error)
        else:
            logger.warning("%s failed (%r); trying again at %s", what, error, owed.next_at.isoformat())
        return False
    owed.settle()
    return True
