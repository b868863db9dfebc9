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
import signal
from types import FrameType
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.management.base import CommandError
from django.utils.autoreload import DJANGO_AUTORELOAD_ENV, run_with_reloader
from django_tasks_db.management.commands.db_worker import Command as TasksDbWorkerCommand
from django_tasks_db.management.commands.db_worker import Worker as TasksDbWorker

from generation.worker import Poller

logger = logging.getLogger("generation.worker")


class Worker(TasksDbWorker):
    """django-tasks-db's worker, stopped by SIGTERM only between queries.

    django-tasks-db's handler calls `sys.exit(0)` from the signal when no task runs. The
    main thread is then often inside its claim query (every `--interval`), so SystemExit
    is raised in the middle of psycopg's wait: the transaction's exit finds the connection
    still ACTIVE, raises ProgrammingError in its place, and the worker exits 1 with a
    traceback. Here the first signal only ends the loop, which finishes its round and
    sleeps at most `--interval` (1 s by default) before `handle` hands the poller's claims
    back. A second signal is django-tasks-db's forced exit, as before.
    """

    def shutdown(self, signum: int, frame: FrameType | None) -> None:
        if not self.running:
            super().shutdown(signum, frame)
            return
        # A stop asked for is routine (a deploy, a scale-down): INFO, not a warning.
        logger.info("Received %s - shutting down gracefully (again to force)", signal.strsignal(signum))
        self.running = False


class Command(TasksDbWorkerCommand):
    help = "Run background tasks (django-tasks-db) and Stefna's generation poller, heartbeat and sweeper."

    def add_arguments(self, parser: Any) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--no-poller",
            action="store_true",
            help="Only run tasks: no generation poller, heartbeat or sweeper in this process.",
        )

    def check(self, *args: Any, **kwargs: Any) -> None:
        """The start-up checks; with LOG_FORMAT=json their warnings are log records.

        Django prints them as a block of text on stderr, and with LOG_FORMAT=json every
        other line this process writes is one JSON object: a log shipper choked on the
        block at every start (in compose's preview, stefna.W001 is always there). An error
        still stops the worker as Django does.
        """
        if settings.LOG_FORMAT != "json":
            super().check(*args, **kwargs)
            return
        issues = [issue for issue in checks.run_checks(tags=kwargs.get("tags")) if not issue.is_silenced()]
        if any(issue.is_serious() for issue in issues):
            super().check(*args, **kwargs)  # raises SystemCheckError, as without JSON
        for issue in issues:
            logger.warning("%s", issue, extra={"check_id": issue.id})

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
            self._run_tasks_worker(**options)
        finally:
            if poller is not None:
                poller.stop()

    def _run_tasks_worker(
        self,
        *,
        verbosity: int,
        queue_name: str,
        interval: float,
        batch: bool,
        backend_name: str,
        startup_delay: bool,
        reload: bool,
        max_tasks: int | None,
        worker_id: str,
        exclude_queues: str,
        **options: Any,
    ) -> None:
        """django-tasks-db's `handle` (0.13), with the Worker above in place of its own."""
        self.configure_logging(verbosity)
        if reload and batch:
            logger.warning("Warning: --reload and --batch cannot be specified together. Disabling autoreload.")
            reload = False
        queue_names = queue_name.split(",")
        excluded_queue_names = exclude_queues.split(",") if exclude_queues else []
        if excluded_queue_names and "*" not in queue_names:
            raise CommandError("--exclude-queues can only be used with --queue-name=*")
        worker = Worker(
            queue_names=queue_names,
            interval=interval,
            batch=batch,
            backend_name=backend_name,
            startup_delay=startup_delay,
            max_tasks=max_tasks,
            worker_id=worker_id,
            excluded_queue_names=excluded_queue_names,
        )
        if reload:
            if os.environ.get(DJANGO_AUTORELOAD_ENV) == "true":
                worker.configure_signals()  # only the reloader's child runs the worker
            run_with_reloader(worker.run)
        else:
            worker.configure_signals()
            worker.run()
