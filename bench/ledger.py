#!/usr/bin/env python
"""The credit ledger under contention, on a throwaway PostgreSQL database (`stefna_bench_ledger`).

1. The acceptance race, repeated: 20 threads start a generation (the real
   `generation_request`) for one user who can afford 5: outcomes and wall time.
2. Ledger throughput: T threads each loop "create a generation + reserve, then refund"
   (two transactions), once all on ONE user (they queue on that wallet's row lock) and
   once on T different users (no shared lock): settled generations per second.
3. `check_ledger` over everything written: problems found and time taken.

    .venv/bin/python bench/ledger.py [--threads 16] [--seconds 3] [--rounds 5] [--keep-db]
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

DB_NAME = "stefna_bench_ledger"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()

    url = support.create_database(DB_NAME)
    env = support.bench_env(DATABASE_URL=url, RATE_LIMIT_GENERATIONS_PER_MINUTE="100000", DAILY_CREDITS="0")
    subprocess.run([support.PYTHON, "manage.py", "migrate", "-v0"], cwd=support.ROOT, env=env, check=True)
    os.environ.update(env)
    os.environ["MEDIA_ROOT"] = str(Path("/tmp") / "stefna-bench-ledger-media")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stefna.settings")
    import django

    django.setup()
    try:
        failures = run(args)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep_db:
            support.drop_database(DB_NAME)
    return 1 if failures else 0


def run(args: argparse.Namespace) -> int:
    from django.conf import settings
    from django.db import connections, transaction

    from credits import ledger
    from credits.exceptions import InsufficientCredits
    from credits.reconcile import find_ledger_problems
    from credits.selectors import balance_of
    from generation.images import validate_image
    from generation.models import Generation
    from generation.services import generation_request
    from presets.models import Preset
    from stefna.accounts.models import User
    from tests.images import make_jpeg

    image = validate_image(make_jpeg(64, 48))
    preset = Preset.objects.get(slug="ghibli_tears")
    cost = settings.GENERATION_COST
    failures = 0

    def in_threads(count: int, work) -> list[object]:  # type: ignore[no-untyped-def]
        barrier = threading.Barrier(count)
        results: list[object] = [None] * count

        def body(index: int) -> None:
            try:
                barrier.wait()
                results[index] = work(index)
            except Exception as error:
                results[index] = error
            finally:
                connections.close_all()

        threads = [threading.Thread(target=body, args=(index,)) for index in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results

    print(f"1. 20 parallel starts, credits for 5 ({args.rounds} rounds, PostgreSQL)")
    walls = []
    for round_number in range(args.rounds):
        user = User.objects.create_user(email=f"race{round_number}@bench.example")
        ledger.grant(user=user, amount=5 * cost)
        began = time.perf_counter()
        outcomes = in_threads(
            20,
            lambda _, user_id=user.pk: generation_request(
                user=User.objects.get(pk=user_id), preset_slug=preset.slug, image=image
            ),
        )
        walls.append((time.perf_counter() - began) * 1000)
        started = sum(isinstance(outcome, tuple) for outcome in outcomes)
        refused = sum(isinstance(outcome, InsufficientCredits) for outcome in outcomes)
        ok = (started, refused, balance_of(user=user)) == (5, 15, 0)
        failures += not ok
        print(f"   round {round_number + 1}: {started} started, {refused} refused (402), balance {balance_of(user=user)}"
              f" {'ok' if ok else 'WRONG'}")  # fmt: skip
    print(f"   wall time p50 {support.percentile(walls, 0.5):.0f} ms, max {max(walls):.0f} ms")

    def loop(users: list[User]):  # type: ignore[no-untyped-def]
        deadline = time.perf_counter() + args.seconds

        def work(index: int) -> int:
            user = users[index % len(users)]
            done = 0
            while time.perf_counter() < deadline:
                with transaction.atomic():
                    generation = Generation.objects.create(
                        user=user, preset_slug=preset.slug, kind=preset.kind, cost=cost, status="queued"
                    )
                    ledger.reserve(user=user, generation=generation, amount=cost)
                with transaction.atomic():
                    Generation.objects.filter(pk=generation.pk).update(status="failed")
                    ledger.refund(generation=generation)
                done += 1
            return done

        return in_threads(args.threads, work)

    print(f"2. reserve + refund loops, {args.threads} threads, {args.seconds:g} s each")
    for label, count in (("one shared user", 1), (f"{args.threads} users", args.threads)):
        users = [User.objects.create_user(email=f"loop-{count}-{n}@bench.example") for n in range(count)]
        for user in users:
            # Enough for every thread to hold one reservation at once.
            ledger.grant(user=user, amount=cost * args.threads)
        results = loop(users)
        errors = [result for result in results if isinstance(result, Exception)]
        failures += bool(errors)
        total = sum(result for result in results if isinstance(result, int))
        print(f"   {label}: {total / args.seconds:,.0f} generations settled/s"
              f"{f', {len(errors)} errors: {errors[0]!r}' if errors else ''}")  # fmt: skip

    from credits.models import CreditEntry

    began = time.perf_counter()
    problems = find_ledger_problems()
    took = (time.perf_counter() - began) * 1000
    failures += bool(problems)
    print(f"3. check_ledger: {len(problems)} problems over {CreditEntry.objects.count():,} entries in {took:.0f} ms")
    for problem in problems[:10]:
        print(f"   {problem}")
    return failures


if __name__ == "__main__":
    sys.exit(main())
