#!/usr/bin/env python
"""Buying credits on a throwaway PostgreSQL database (`stefna_bench_payments`), with the
real Stripe SDK against the fake Stripe API (tests/fakes/stripe.py) in this process.

1. Checkout: N purchases started through `purchase_start` (a Stripe session each).
2. Webhooks: each paid session's `checkout.session.completed`, signed, delivered once
   through the real endpoint (Django's WSGI handler): deliveries per second.
3. The race, repeated: 20 threads deliver the same event at once: grants per round.
4. `check_ledger` over everything written: problems found and time taken.

    .venv/bin/python bench/payments.py [--purchases 200] [--rounds 5] [--keep-db]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import support

DB_NAME = "stefna_bench_payments"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--purchases", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()

    from tests.fakes.stripe import SECRET_KEY, WEBHOOK_SECRET, FakeStripe

    fake = FakeStripe()
    fake.start()
    url = support.create_database(DB_NAME)
    env = support.bench_env(
        DATABASE_URL=url,
        STRIPE_SECRET_KEY=SECRET_KEY,
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        STRIPE_API_BASE=fake.url,
        ALLOWED_HOSTS="testserver",
        RATE_LIMIT_CHECKOUTS_PER_HOUR="1000000",
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
    )
    subprocess.run([support.PYTHON, "manage.py", "migrate", "-v0"], cwd=support.ROOT, env=env, check=True)
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stefna.settings")
    import django

    django.setup()
    try:
        failures = run(args, fake)
    finally:
        from django.db import connections

        connections.close_all()
        fake.stop()
        if not args.keep_db:
            support.drop_database(DB_NAME)
    return 1 if failures else 0


def run(args: argparse.Namespace, fake) -> int:  # type: ignore[no-untyped-def]
    from django.db import connections
    from django.test import Client

    from credits.models import CreditEntry
    from credits.payments.purchases import purchase_start
    from credits.reconcile import find_ledger_problems
    from stefna.accounts.models import User
    from tests.fakes.stripe import FakeStripe, sign

    failures = 0
    users = [User.objects.create_user(email=f"buyer{index}@example.com") for index in range(args.purchases)]
    started = time.perf_counter()
    purchases = [purchase_start(user=user, pack_slug="starter", site_url="http://testserver/") for user in users]
    elapsed = time.perf_counter() - started
    print(f"1. checkout: {len(purchases)} purchases + Stripe sessions in {elapsed:.2f} s "
          f"({elapsed / len(purchases) * 1000:.1f} ms each)")  # fmt: skip

    def deliver(payload: bytes) -> int:
        response = Client().post(
            "/api/stripe/webhook", data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=sign(payload)
        )
        return response.status_code

    payloads = [
        FakeStripe.event("checkout.session.completed", fake.pay(purchase.stripe_session_id)) for purchase in purchases
    ]
    started = time.perf_counter()
    statuses = [deliver(payload) for payload in payloads]
    elapsed = time.perf_counter() - started
    granted = CreditEntry.objects.filter(reason="purchase").count()
    ok = statuses == [200] * len(payloads) and granted == len(payloads)
    failures += not ok
    print(f"2. webhooks: {len(payloads)} deliveries in {elapsed:.2f} s ({len(payloads) / elapsed:.0f}/s, "
          f"{elapsed / len(payloads) * 1000:.1f} ms each), {granted} grants  {'ok' if ok else 'FAILED'}")  # fmt: skip

    print("3. 20 concurrent deliveries of one event:")
    for round_number in range(args.rounds):
        user = User.objects.create_user(email=f"racer{round_number}@example.com")
        purchase = purchase_start(user=user, pack_slug="starter", site_url="http://testserver/")
        payload = FakeStripe.event("checkout.session.completed", fake.pay(purchase.stripe_session_id))
        barrier = threading.Barrier(20)
        outcomes: list[int] = []

        def race(barrier: threading.Barrier, payload: bytes, outcomes: list[int]) -> None:
            barrier.wait()
            try:
                outcomes.append(deliver(payload))
            finally:
                connections.close_all()

        threads = [threading.Thread(target=race, args=(barrier, payload, outcomes)) for _ in range(20)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        grants = CreditEntry.objects.filter(purchase=purchase, reason="purchase").count()
        ok = grants == 1 and outcomes == [200] * 20
        failures += not ok
        print(f"   round {round_number + 1}: {grants} grant, all 200: {outcomes == [200] * 20}, "
              f"{elapsed * 1000:.0f} ms  {'ok' if ok else 'FAILED'}")  # fmt: skip

    started = time.perf_counter()
    problems = find_ledger_problems()
    elapsed = time.perf_counter() - started
    failures += bool(problems)
    print(f"4. check_ledger: {len(problems)} problems over {CreditEntry.objects.count()} entries "
          f"in {elapsed * 1000:.0f} ms")  # fmt: skip
    return failures


if __name__ == "__main__":
    sys.exit(main())
