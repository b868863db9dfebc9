"""Background tasks for credits (django.tasks, stored by django-tasks-db)."""

from __future__ import annotations

from django.core.cache import cache
from django.tasks import task

from .payments.purchases import purchase_reconcile_pending
from .payments.stripe_api import stripe_configured

# How often the worker's upkeep asks Stripe about pending purchases.
UPKEEP_EVERY_SECONDS = 60


@task()
def reconcile_purchases_task() -> None:
    """Never "paid but no credits": grant paid purchases whose webhook is late or lost."""
    purchase_reconcile_pending()


def purchase_upkeep_due() -> None:
    """Called by the worker's periodic sweep: enqueue the reconciliation at most once a
    minute across every worker (a shared cache key), and only when Stripe is configured.
    The Stripe calls run as a task on the worker's task thread, never in the poller."""
    if stripe_configured() and cache.add("credits:purchase-upkeep", 1, UPKEEP_EVERY_SECONDS):
        reconcile_purchases_task.enqueue()
