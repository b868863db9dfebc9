"""`manage.py db_worker`: django-tasks-db's worker plus Stefna's poller.

This command replaces django_tasks_db's (the generation app is listed before
django_tasks_db in INSTALLED_APPS) and keeps every one of its options. The main
thread runs tasks exactly as django-tasks-db does; a second thread runs the poller
(generation/worker.py), which drives the pipeline.

`--no-poller` runs tasks only (e.g. a second worker dedicated to a queue); at least
one worker must run the poller, or no generation is ever submitted.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from django.utils.autoreload import DJANGO_AUTORELOAD_ENV
from django_tasks_db.management.commands.db_worker import Command as TasksDbWorkerCommand

from generation.worker import Poller

logger = logging.getLogger("generation.worker")


class Command(TasksDbWorkerCommand):
    help = "Run background tasks (django-tasks-db) and Stefna's generation poller, heartbeat and sweeper."

    def add_arguments(self, parser: Any) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--no-poller",
            action="store_true",
            help="Only run tasks: no generation poller, heartbeat or sweeper in this process.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        no_poller = options.pop("no_poller", False)
        # With --reload the parent process only watches files; the poller runs in the child.
        reloading_parent = options.get("reload") and os.environ.get(DJANGO_AUTORELOAD_ENV) != "true"
        poller = None
        if not no_poller and not reloading_parent:
            poller = Poller(worker_id=options["worker_id"])
            poller.start()
            logger.info("generation poller started (worker %s, %d threads)", options["worker_id"], poller.threads)
        try:
            super().handle(*args, **options)
        finally:
            if poller is not None:
                poller.stop()
