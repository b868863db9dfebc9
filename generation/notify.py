""" "Email me when it's done": one email to the owner when a generation they asked about ends.

Called by the pipeline where a generation succeeds or fails, by staff's refund, which
fails a generation still at work, and by staff's cancel (`Generation.STAFF_CANCEL_CODE`):
the owner did not stop it and would otherwise wait for an email that never comes. Not on
the owner's own cancel: they know. The send happens in a task queued with the end (it
runs once the end commits), so a slow mail server never holds up the worker's poll loop;
a conditional update on `notified_at` claims it, so it goes once however often a webhook,
the poller and a retry report the same end. A mail server that refuses it (or a worker
killed while sending) does not lose it: the claim queues the next attempt, minutes to a
day later, and sending settles `notified_at` (stefna/mail.py: at least once, a few tries
over about a day, then an error line). A staff retry (`generation_retry`) starts a new
run the owner is charged for again: it clears `notified_at`, so that run's end is
emailed too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import partial

from django.conf import settings
from django.core.mail import send_mail
from django.db.models import Q
from django.tasks import task
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _

from stefna import mail
from stefna.i18n import language_for_user
from stefna.i18n_tags import preset_label
from stefna.logging_json import request_id_bound

from .models import Generation

logger = logging.getLogger("generation")


def generation_notify_ended(*, generation_ids: Iterable[object]) -> None:
    """Queue the email for each of these generations whose owner asked for one.

    Called inside the transaction that ends them. The task is queued in that transaction,
    not after its commit (the usual rule): django-tasks-db keeps tasks in this database,
    so the email owed commits with the end, and no worker sees it before. Queued after
    the commit, a process that died in between (killed while asking fal to cancel the
    job, say) left the end with nobody owing its email.
    """
    ids = [str(pk) for pk in generation_ids]
    if not ids:
        return
    wanted = Generation.objects.filter(pk__in=ids, notify=True, notified_at__isnull=True).values_list("pk", flat=True)
    for generation_id in wanted:
        generation_notify_task.enqueue(generation_id=str(generation_id))


def generation_notify_send(*, generation_id: str, attempt: int = 0, claim: str = "") -> bool:
    """Send the email (at least once: see stefna/mail.py; never to a closed account); True
    when this call sent it. `attempt` and `claim` are the retries': the first attempt is
    called with neither."""
    # Only while it is still the end it was queued for: staff may have retried it since
    # (queued or running again, charged again, or canceled by its owner), and then this
    # email would report a refund that no longer holds. The retry's own end queues one
    # (and clears `notified_at`, so no attempt left from this end matches either).
    owed = mail.claim(
        Generation,
        generation_id,
        field="notified_at",
        owed=Q(notify=True)
        & (
            Q(status__in=(Generation.Status.SUCCEEDED, Generation.Status.FAILED))
            | Q(status=Generation.Status.CANCELED, error_code=Generation.STAFF_CANCEL_CODE)
        ),
        attempt=attempt,
        claim=claim,
        task=generation_notify_task,
        arguments={"generation_id": generation_id},
    )
    if owed is None:
        return False
    generation = Generation.objects.select_related("user").get(pk=generation_id)
    if not generation.user.is_active:
        # Closed since this ended (deleted: the address is deleted-….invalid now and the
        # image is gone; or closed by staff): there is no one to tell, now or at a later
        # try. Read after the claim, so a deletion committing later finds this email
        # already on its way.
        owed.settle()
        return False
    # A task on the worker: its lines carry the id of the request that asked for the job.
    with request_id_bound(generation.origin_request_id):
        return mail.send_owed(
            owed, partial(_send, generation), what=f"generation {generation_id}: the email to the owner", logger=logger
        )


def _send(generation: Generation) -> None:
    path = reverse("generation_detail", kwargs={"generation_id": generation.pk})
    link = f"{settings.SITE_URL.rstrip('/')}{path}" if settings.SITE_URL else path
    # Sent by the worker, outside any request: written in the owner's language (issue 21).
    with translation.override(language_for_user(generation.user)):
        name = preset_label(generation.preset_slug, generation.preset_name)
        if generation.status == Generation.Status.SUCCEEDED:
            subject = _("Your %(style)s image is ready") % {"style": name}
            body = _("Your %(style)s image is ready. See it here:\n\n%(link)s\n") % {"style": name, "link": link}
        elif generation.status == Generation.Status.CANCELED:  # by staff (the owner's own is not emailed)
            subject = _("Our team stopped your %(style)s image") % {"style": name}
            body = _(
                "Our team stopped your %(style)s image before it was done, and your credits were refunded. "
                "You can try again from the same photo here:\n\n%(link)s\n"
            ) % {"style": name, "link": link}
        else:
            subject = _("We couldn't make your %(style)s image") % {"style": name}
            body = _(
                "We couldn't make your %(style)s image, and your credits were refunded. "
                "You can try again from the same photo here:\n\n%(link)s\n"
            ) % {"style": name, "link": link}
    send_mail(subject, body, None, [generation.user.email])
    logger.info("generation %s: owner notified", generation.pk)


@task()
def generation_notify_task(*, generation_id: str, attempt: int = 0, claim: str = "") -> None:
    generation_notify_send(generation_id=generation_id, attempt=attempt, claim=claim)
