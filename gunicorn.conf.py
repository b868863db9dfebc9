"""gunicorn settings for Stefna in production: `gunicorn -c gunicorn.conf.py`.

gunicorn also reads this file from the working directory when no -c is given, so
`gunicorn --worker-class sync stefna.wsgi` (the benches' sync mode) gets the same
timeouts with the worker class and app it names on the command line.

ASGI through the uvicorn-worker package (`uvicorn_worker.UvicornWorker`, which
stefna/asgi_worker.py extends; the old `uvicorn.workers` module is deprecated), so
`/api/generate-image` waits for its result on the event loop instead of holding a worker.
Every value can be overridden from the environment without editing this file; the names
are gunicorn's own where it has one.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
from pathlib import Path


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


wsgi_app = "stefna.asgi:application"
# The uvicorn-worker package's worker, ending live-status streams when the process stops
# (stefna/asgi_worker.py) so that they do not hold a deploy for the whole graceful timeout.
worker_class = "stefna.asgi_worker.UvicornWorker"
# A blank value is unset, as in .env.example (an env file for compose and systemd too).
_host = os.environ.get("HOST", "").strip() or "0.0.0.0"  # noqa: S104
bind = os.environ.get("GUNICORN_BIND", "").strip() or f"{_host}:{_env_int('PORT', 8000)}"

# One event loop per process serves many waiting clients, so processes are for CPU, not
# for concurrency: one per core, at least two so a crash or a restart leaves one serving.
workers = _env_int("WEB_CONCURRENCY", max(2, multiprocessing.cpu_count()))
# Restart each process after this many requests (with jitter, so not all at once) to bound
# a slow leak in a dependency; off by default (0), as none is known.
max_requests = _env_int("GUNICORN_MAX_REQUESTS", 0)
max_requests_jitter = _env_int("GUNICORN_MAX_REQUESTS_JITTER", 200)

# The worker's heartbeat: a process whose event loop is blocked this long is killed and
# replaced. Waiting requests do not count (the loop is free while they wait).
timeout = _env_int("GUNICORN_TIMEOUT", 30)
# On SIGTERM a process stops accepting and finishes what it holds. A studio call may wait
# GENERATE_IMAGE_WAIT_SECONDS for its image; give it that long and a little more, so a
# deploy does not cut a paying client off. (compose's stop_grace_period and systemd's
# TimeoutStopSec are set above this.)
graceful_timeout = _env_int("GUNICORN_GRACEFUL_TIMEOUT", int(_env_float("GENERATE_IMAGE_WAIT_SECONDS", 60)) + 10)
# Behind nginx, which keeps its own client connections: a short keep-alive upstream.
keepalive = _env_int("GUNICORN_KEEPALIVE", 5)

# Load the app before forking: a broken settings file fails the start, not each worker.
preload_app = (os.environ.get("GUNICORN_PRELOAD", "").strip() or "1") == "1"
# No control socket unless asked for: several gunicorns on one host (smoke, benches, other
# sites) would fight over the default path in $HOME.
control_socket_disable = not os.environ.get("GUNICORN_CONTROL_SOCKET")
if not control_socket_disable:
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]
# Our middleware logs one line per request with its id (LOG_FORMAT=json for JSON), so
# gunicorn's access log is off unless asked for; errors go to stderr.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "").strip() or "info"
# With LOG_FORMAT=json every line is JSON, gunicorn's and uvicorn's own included (a log
# shipper reading one JSON object a line would otherwise choke on "Booting worker…").
# The formatter is the app's (stefna/logging_json.py, which needs no Django). Without it,
# gunicorn's own text lines as before.
if (os.environ.get("LOG_FORMAT", "").strip().lower() or "text") == "json":
    _handlers: dict[str, dict[str, str]] = {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"},
        "error_console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
    }
    _access_handlers = []
    if accesslog == "-":
        _access_handlers = ["console"]
    elif accesslog:
        _handlers["access_file"] = {"class": "logging.FileHandler", "filename": accesslog, "formatter": "json"}
        _access_handlers = ["access_file"]
    logconfig_dict = {
        # Django's LOGGING configures the app's loggers; gunicorn adds none to the root.
        "root": {"level": "INFO", "handlers": []},
        "loggers": {
            "gunicorn.error": {"level": loglevel.upper(), "handlers": ["error_console"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": _access_handlers, "propagate": False},
        },
        "handlers": _handlers,
        "formatters": {"json": {"()": "stefna.logging_json.JsonFormatter"}},
    }
# The client address reaches Django as REMOTE_ADDR only from the proxy itself; Stefna reads
# X-Forwarded-For according to TRUSTED_PROXY_COUNT, so uvicorn must not rewrite it first.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "")
proxy_allow_ips = forwarded_allow_ips
# Temporary files of the worker heartbeat on tmpfs where there is one (containers).
worker_tmp_dir = "/dev/shm" if Path("/dev/shm").is_dir() else None  # noqa: S108


def on_starting(server):  # type: ignore[no-untyped-def]
    """Start each run with an empty Prometheus folder: old samples of dead processes would add up."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        Path(folder).mkdir(parents=True, exist_ok=True)


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
