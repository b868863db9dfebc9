"""Stefna's one settings module.

Every knob comes from the environment, as the outside contract lists (kept with the
project's shared documents, outside this repository); `.env.example` documents each
variable. Defaults are safe for production (DEBUG off, secrets
required) and `make run` switches on the development conveniences.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def env_str(name: str, default: str) -> str:
    """A blank value is unset, as in .env.example: the default applies."""
    return os.environ.get(name, "").strip() or default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name, "").strip()
    return [item.strip() for item in value.split(",") if item.strip()] if value else default


DEBUG = env_bool("DEBUG", False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        # Refusing to start beats signing sessions with a key anyone can read in the repo.
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off (see .env.example).")
    SECRET_KEY = "django-insecure-dev-only-key-never-use-in-production"  # noqa: S105
# Earlier keys, still accepted for signatures (sessions) while a new SECRET_KEY rolls out.
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS", [])

_local_hosts = ["localhost", "127.0.0.1", "[::1]"]
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", _local_hosts if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list(
    "CSRF_TRUSTED_ORIGINS",
    ["http://localhost:8000", "http://127.0.0.1:8000"] if DEBUG else [],
)

INSTALLED_APPS = [
    "stefna.accounts",
    # Our apps come before django_tasks_db so generation's `db_worker` (which adds the
    # poller and heartbeat to django-tasks-db's worker) is the one manage.py runs.
    "generation",
    "credits",
    "presets",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_tasks_db",
    "ninja",
    "storages",
    # Google sign-in only (allauth's social part); email-code sign-in is our own.
    "allauth",
    # allauth.account, titled apart from our own accounts app in the admin.
    "stefna.allauth_apps.AllauthAccountConfig",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # i18n: the visitor's language (cookie, else Accept-Language); UserLanguageMiddleware
    # below then applies the account's choice, and Accept-Language alone for the API.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "stefna.i18n.UserLanguageMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "stefna.body_limits.BodyLimitMiddleware",  # bounded bodies, refused with a drained 413
    "stefna.input_guard.RefuseNulMiddleware",  # NUL is a 500 on PostgreSQL: refused at the edge
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "stefna.urls"
# A stale tab's form gets templates/403_csrf.html in the site's layout (see stefna/csrf.py).
CSRF_FAILURE_VIEW = "stefna.csrf.csrf_failure"
WSGI_APPLICATION = "stefna.wsgi.application"
ASGI_APPLICATION = "stefna.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "stefna.context_processors.site",
                "stefna.i18n.context",
                "stefna.social.context",
            ],
            "libraries": {"stefna_i18n": "stefna.i18n_tags"},
        },
    },
]

# --- Database -------------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", "") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool("DB_POOL", True):
    # Django's built-in psycopg pool. Django's ASGI handler ran every request on a thread
    # of its own, and with persistent connections each thread kept a PostgreSQL backend
    # open: at a few hundred users PostgreSQL ran out of connections and requests failed
    # (requests now run on WEB_THREADS reused threads, stefna/asgi_handler.py). A pool per
    # process caps that (DB_POOL_MAX_SIZE per web process and per worker, to be kept under
    # PostgreSQL's max_connections in total); a request holds a connection only while it
    # runs. Django requires CONN_MAX_AGE 0 with a pool (the pool keeps the connections).
    # DB_POOL=0 turns it off, e.g. behind an external pooler such as PgBouncer.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env_int("DB_POOL_MIN_SIZE", 2),
        "max_size": env_int("DB_POOL_MAX_SIZE", 20),
        # A request that cannot get a connection this soon is answered 503 (stefna/unavailable.py).
        "timeout": env_float("DB_POOL_TIMEOUT", 10.0),
    }
# Threads per web process that serve synchronous views under ASGI (stefna/asgi_handler.py).
# Each holds at most one database connection while it serves a request, so keep it under
# DB_POOL_MAX_SIZE: the status stream's reader and the live listener take one more each.
# Few, because on CPython they share one GIL with the event loop: at the crowd bench's
# load 16 threads spent more CPU contending than 4, and the loop (which writes every answer
# and every live event) waited behind them, so results reached the screen later (figures in
# bench/README.md). A view that waits on a slow outside service (SMTP for a sign-in code,
# Stripe, S3) holds its thread while it waits: raise it where such waits dominate.
WEB_THREADS = env_int("WEB_THREADS", 4)
# How much lower the CPU priority (nice value) of those threads is than the event loop's,
# on Linux (stefna/asgi_handler.py). On saturated CPUs 10 made the loop (health checks,
# every answer's and live event's bytes) go first, so /healthz answered sooner at the crowd
# bench's 300 users. But fal's webhook is a request too, and with webhooks on its result
# reached the screen later, as did finished jobs at 300 users without them (figures in
# bench/README.md). So off by default: for a node whose probes matter more than its
# results' latency.
WEB_THREAD_NICENESS = env_int("WEB_THREAD_NICENESS", 0)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        # IMMEDIATE takes SQLite's write lock when a transaction starts, so two writers
        # queue up instead of one failing to upgrade its read lock ("database is locked").
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not :memory:, so threads, the live server and a worker process share one
    # database; one per test process, so parallel runs never clobber each other.
    DATABASES["default"]["TEST"] = {
        "NAME": os.environ.get("TEST_SQLITE_NAME")
        or str(Path(tempfile.gettempdir()) / f"stefna-test-{os.getpid()}.sqlite3")
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "accounts:sign_in"
LOGIN_REDIRECT_URL = "studio"
LOGOUT_REDIRECT_URL = "studio"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Cache: rate limits and cached keys must be shared between processes in production.
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            # Degrades to "no cache" while Redis is down (stefna/cache.py); limits then count in the database.
            "BACKEND": "stefna.cache.ResilientRedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    # Sessions are read from Redis and written to both: one database query less on every
    # signed-in request. The database stays the record (a Redis that restarts or evicts
    # costs a read, and while it is down the cache answers "missing": stefna/cache.py).
    SESSION_ENGINE = "stefna.sessions.cached_db"
else:
    # Every process shares the database; per-process memory would give each worker its
    # own rate-limit counts. The table is created by `migrate` (accounts 0002).
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "stefna_cache"}}
    # Django's database sessions, read with one fixed statement (stefna/sessions).
    SESSION_ENGINE = "stefna.sessions.db"

# --- Background tasks -----------------------------------------------------------------
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

# --- i18n -----------------------------------------------------------------------------
# English and Bahasa Indonesia. Any other code (cookie, Accept-Language, the switcher)
# falls back to English. Catalogues: locale/<code>/LC_MESSAGES/django.po, compiled by make.
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("id", "Bahasa Indonesia")]
LOCALE_PATHS = [BASE_DIR / "locale"]
LANGUAGE_COOKIE_NAME = "stefna_language"
LANGUAGE_COOKIE_AGE = 365 * 24 * 60 * 60
LANGUAGE_COOKIE_SAMESITE = "Lax"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Dates and times as each language writes them, ahead of Django's formats (stefna/formats/).
FORMAT_MODULE_PATH = ["stefna.formats"]

# --- Static and media files -------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = env_str("MEDIA_URL", "/media/")
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", "") or BASE_DIR / "media")
# Set by `make smoke`, compose and the systemd path's env file (docs/deploy.md): the media
# folder is one every web process and worker reads (one disk, or a shared mount), which
# silences stefna.W005.
MEDIA_ROOT_SHARED = env_bool("MEDIA_ROOT_SHARED", False)
# Without a manifest (tests, runserver) whitenoise falls back to unhashed names instead
# of raising, so collectstatic is only needed where gunicorn serves the files.
WHITENOISE_MANIFEST_STRICT = False

AWS_STORAGE_BUCKET_NAME = os.environ.get("AWS_STORAGE_BUCKET_NAME", "")
if AWS_STORAGE_BUCKET_NAME:
    # Private objects, addressed through our ownership check and presigned URLs
    # (stefna/private_storage.py); never a public ACL or an unsigned bucket address.
    _default_storage = {
        "BACKEND": "stefna.private_storage.PrivateS3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "endpoint_url": os.environ.get("AWS_S3_ENDPOINT_URL") or None,
            "region_name": os.environ.get("AWS_S3_REGION_NAME") or None,
            "addressing_style": os.environ.get("AWS_S3_ADDRESSING_STYLE") or None,
            "file_overwrite": False,
        },
    }
else:
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STORAGES: dict[str, dict[str, Any]] = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
# True when fal can fetch stored source photos from the bucket (a presigned URL valid
# for one attempt). Otherwise fal gets a data URI of the photo. Defaults to "a bucket is
# set"; turn it off for a bucket fal cannot reach (MinIO on a private network).
STORAGE_PUBLIC_URLS = env_bool("STORAGE_PUBLIC_URLS", bool(AWS_STORAGE_BUCKET_NAME))

# --- Email ----------------------------------------------------------------------------
# Django 6.1's MAILERS, filled from the classic EMAIL_* variable names operators know.
_email_host = os.environ.get("EMAIL_HOST", "")
_email_backend = os.environ.get("EMAIL_BACKEND") or (
    "django.core.mail.backends.smtp.EmailBackend" if _email_host else "django.core.mail.backends.console.EmailBackend"
)
_mailer: dict[str, object] = {"BACKEND": _email_backend}
if _email_backend.endswith("smtp.EmailBackend"):
    # EMAIL_USE_SSL (implicit TLS, usually port 465) is the other way Django names; the two
    # exclude each other, so SSL switches STARTTLS's default off.
    _email_ssl = env_bool("EMAIL_USE_SSL", False)
    _mailer["OPTIONS"] = {
        "host": _email_host or "localhost",
        "port": env_int("EMAIL_PORT", 465 if _email_ssl else 587),
        "username": os.environ.get("EMAIL_HOST_USER", ""),
        "password": os.environ.get("EMAIL_HOST_PASSWORD", ""),
        "use_tls": env_bool("EMAIL_USE_TLS", not _email_ssl),
        "use_ssl": _email_ssl,
        "timeout": env_int("EMAIL_TIMEOUT", 20),
    }
MAILERS = {"default": _mailer}
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Stefna <no-reply@stefna.local>")
# This site's public address, for links in emails ("your image is ready"); issue 19.
SITE_URL = os.environ.get("SITE_URL") or ("http://127.0.0.1:8000" if DEBUG else "")

# --- Security -------------------------------------------------------------------------
# Off in development; a production deployment behind TLS switches these on by env.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Load balancers probe health over plain HTTP inside the network; a redirect would read as "down".
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# No inline script anywhere: every script is a static file from our own origin.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    # Results live on Cloudinary (or fal, until persisted): any https image host.
    "img-src": [CSP.SELF, "data:", "blob:", "https:"],
    "connect-src": [CSP.SELF],
    "font-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}

# --- Logging --------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "stefna": {"level": LOG_LEVEL},
        "generation": {"level": LOG_LEVEL},
        "credits": {"level": LOG_LEVEL},
        "presets": {"level": LOG_LEVEL},
        "django_tasks_db": {"level": "WARNING"},
        # fal-client and httpx log request URLs at INFO; the key is only ever in a header.
        "httpx": {"level": "WARNING"},
    },
}

# --- Stefna ---------------------------------------------------------------------------
SITE_NAME = "Stefna"
GENERATION_COST = 2  # fixed by the design documents: every generation costs 2 credits
DAILY_CREDITS = env_int("DAILY_CREDITS", 30)
MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_BYTES", 15 * 1024 * 1024)
MAX_IMAGE_PIXELS = env_int("MAX_IMAGE_PIXELS", 25_000_000)
# Sources are scaled down to this long side before storage: models work at ~1 MP and
# a smaller source keeps data URIs and fal uploads small.
MAX_SOURCE_SIDE = env_int("MAX_SOURCE_SIDE", 2048)
MAX_PROMPT_CHARS = env_int("MAX_PROMPT_CHARS", 2000)
# Photos decoded at once per process: a 25 MP decode holds up to ~100 MB, so parallel
# uploads wait their turn here instead of multiplying that (generation/images.py).
IMAGE_DECODE_CONCURRENCY = env_int("IMAGE_DECODE_CONCURRENCY", 1)
# AVIF has no reduced decode (libavif makes the full-size picture, then Pillow copies it),
# so a maximal one costs more than the memory bound allows: a lower limit (bench/README.md).
MAX_AVIF_PIXELS = env_int("MAX_AVIF_PIXELS", 13_000_000)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_UPLOAD_BYTES + 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# Bodies are refused from their declared length (stefna/body_limits.py): anonymous
# callers may send this much (sign-in forms, webhooks), signed-in ones a photo's worth.
ANONYMOUS_MAX_BODY_BYTES = env_int("ANONYMOUS_MAX_BODY_BYTES", 1024 * 1024)
MAX_REQUEST_BODY_BYTES = DATA_UPLOAD_MAX_MEMORY_SIZE
# After a 413 the rest of the body is read and dropped up to these bounds, so clients
# that send everything before reading (urllib) see the answer, not a broken pipe.
DRAIN_MAX_BYTES = env_int("DRAIN_MAX_BYTES", 64 * 1024 * 1024)
DRAIN_MAX_SECONDS = env_int("DRAIN_MAX_SECONDS", 10)

FAL_KEY = os.environ.get("FAL_KEY", "")
OFFLINE_MODE = not FAL_KEY
FAL_WEBHOOK_BASE_URL = os.environ.get("FAL_WEBHOOK_BASE_URL", "").rstrip("/")
FAL_WEBHOOK_JWKS_URL = env_str("FAL_WEBHOOK_JWKS_URL", "https://rest.alpha.fal.ai/.well-known/jwks.json")
# How long one fal attempt may take (queue + run) before it is cancelled and the next
# model in the chain is tried.
FAL_ATTEMPT_TIMEOUT_SECONDS = env_int("FAL_ATTEMPT_TIMEOUT_SECONDS", 300)
# How often the worker's poller checks in-flight jobs (seconds).
FAL_POLL_INTERVAL_SECONDS = env_float("FAL_POLL_INTERVAL_SECONDS", 1.0)
# Most jobs in flight at fal at once, across every worker process (CONTRACT); beyond it
# jobs wait their turn, fairly across users (generation/services/schedule.py). fal
# accounts have a concurrency limit: a 429 lowers the effective limit for a while.
FAL_MAX_CONCURRENT = max(1, env_int("FAL_MAX_CONCURRENT", 10))

CLOUDINARY_URL = os.environ.get("CLOUDINARY_URL", "")
CLOUDINARY_CLOUD_NAME = os.environ.get("CLOUDINARY_CLOUD_NAME", "")
CLOUDINARY_API_KEY = os.environ.get("CLOUDINARY_API_KEY", "")
CLOUDINARY_API_SECRET = os.environ.get("CLOUDINARY_API_SECRET", "")
if CLOUDINARY_URL and not CLOUDINARY_CLOUD_NAME:
    _cloudinary = urlparse(CLOUDINARY_URL)
    CLOUDINARY_CLOUD_NAME = _cloudinary.hostname or ""
    CLOUDINARY_API_KEY = _cloudinary.username or ""
    CLOUDINARY_API_SECRET = _cloudinary.password or ""
    CLOUDINARY_UPLOAD_PREFIX = (parse_qs(_cloudinary.query).get("upload_prefix") or [""])[0]
else:
    CLOUDINARY_UPLOAD_PREFIX = os.environ.get("CLOUDINARY_UPLOAD_PREFIX", "")
CLOUDINARY_ENABLED = bool(CLOUDINARY_CLOUD_NAME and CLOUDINARY_API_KEY and CLOUDINARY_API_SECRET)
CLOUDINARY_FOLDER = "stefna/generated"
CLOUDINARY_TIMEOUT_SECONDS = env_int("CLOUDINARY_TIMEOUT_SECONDS", 30)

# Rate limits: (count, window seconds).
RATE_LIMIT_GENERATIONS = (env_int("RATE_LIMIT_GENERATIONS_PER_MINUTE", 20), 60)
RATE_LIMIT_ANON_PER_MINUTE = (env_int("RATE_LIMIT_ANON_PER_MINUTE", 120), 60)
# Making an image public or private, per account: making one private moves its file at
# Cloudinary (or copies it), so unbounded toggling spends everyone's storage calls.
RATE_LIMIT_VISIBILITY_CHANGES = (60, 60)
RATE_LIMIT_CODES_PER_EMAIL = (5, 15 * 60)
RATE_LIMIT_CODES_PER_IP = (20, 60 * 60)
# Code entries per IP (IPv6: per /64) across every email: guessing many inboxes' codes at once.
RATE_LIMIT_CODE_ENTRIES_PER_IP = (env_int("RATE_LIMIT_CODE_ENTRIES_PER_IP", 30), 15 * 60)
# Serve MEDIA_URL through the ownership check (stefna/media.py): local files are
# streamed, a bucket's are redirected to presigned URLs. On whenever MEDIA_URL is a path.
SERVE_MEDIA = env_bool("SERVE_MEDIA", MEDIA_URL.startswith("/"))
# Behind nginx (deploy/nginx.conf), the internal location that serves MEDIA_ROOT's files,
# e.g. /protected-media/: once the ownership check says yes, Stefna answers with an
# X-Accel-Redirect to it and nginx sends the bytes (sendfile, ranges, conditional GETs),
# so no web process reads a photo into memory or writes it out. Unset: Stefna sends them.
MEDIA_ACCEL_REDIRECT = os.environ.get("MEDIA_ACCEL_REDIRECT", "").strip()
if MEDIA_ACCEL_REDIRECT and not (MEDIA_ACCEL_REDIRECT.startswith("/") and MEDIA_ACCEL_REDIRECT.endswith("/")):
    raise ImproperlyConfigured(
        f"MEDIA_ACCEL_REDIRECT must be a path that starts and ends with /, such as /protected-media/, "
        f"not {MEDIA_ACCEL_REDIRECT!r}."
    )

# The public feed's first page is the same for every visitor: each process answers it
# again for this long from what it made last (generation/first_page.py). 0 = never kept.
FEED_CACHE_SECONDS = env_float("FEED_CACHE_SECONDS", 1.0)

# --- API ------------------------------------------------------------------------------
# POST /api/generate-image waits this long for a result before answering 202 with the
# generation id; it polls the row every GENERATE_IMAGE_POLL_SECONDS while it waits.
GENERATE_IMAGE_WAIT_SECONDS = env_float("GENERATE_IMAGE_WAIT_SECONDS", 60.0)
GENERATE_IMAGE_POLL_SECONDS = env_float("GENERATE_IMAGE_POLL_SECONDS", 0.5)

# --- Live status (generation/live.py, GET /api/generations/{id}/events) ----------------
# One event stream stays open at most this long; the browser then reconnects with
# Last-Event-ID (a bound on how long one connection is held, and on a lost client's cost).
LIVE_STREAM_SECONDS = env_float("LIVE_STREAM_SECONDS", 300.0)
# A comment line this often keeps proxies from closing a quiet stream.
LIVE_HEARTBEAT_SECONDS = 15.0
# Where NOTIFY is missing (SQLite) or its connection is down: how often a process reads
# the versions of every generation it watches (one query for all of them).
LIVE_POLL_SECONDS = env_float("LIVE_POLL_SECONDS", 0.5)
# How long a browser waits before reconnecting (the SSE `retry` field); under WSGI, where a
# stream cannot stay open, this is the polling interval.
LIVE_RETRY_MILLISECONDS = 1000
# A process's LISTEN connection (and poller) stops after this long with no stream open.
LIVE_LISTENER_IDLE_SECONDS = 60.0
# The LISTEN connection's keep-alive (each heartbeat) must be answered within this long, or
# the connection counts as dead: the poller covers its streams while it reconnects.
LIVE_LISTENER_TIMEOUT_SECONDS = 5.0
# The same bound for a worker's wake-up LISTEN connection (generation/worker.py): its
# connect (rounded up to whole seconds, at least 2), LISTEN and keep-alive must be answered
# within this long, or it counts as down (the poller goes back to its 0.1-s tick) and
# reconnects.
WORKER_WAKE_TIMEOUT_SECONDS = 5.0

# --- Pipeline -------------------------------------------------------------------------
# A job is first checked FAL_POLL_INTERVAL_SECONDS after it was submitted, then this
# often; keep it at or under 2 s, the delay within which the UI promises updates.
FAL_POLL_MAX_INTERVAL_SECONDS = env_float("FAL_POLL_MAX_INTERVAL_SECONDS", 2.0)
# fal-client retries each call up to 10 times, up to 30 s apart; a worker checking many
# jobs must fail fast instead (a job is simply looked at again on a later round).
FAL_CLIENT_MAX_ATTEMPTS = env_int("FAL_CLIENT_MAX_ATTEMPTS", 2)
FAL_CLIENT_MAX_RETRY_DELAY_SECONDS = env_float("FAL_CLIENT_MAX_RETRY_DELAY_SECONDS", 0.5)
FAL_HTTP_TIMEOUT_SECONDS = env_float("FAL_HTTP_TIMEOUT_SECONDS", 20.0)
# How long fal may keep its own copy of a job's inputs and results (its object-lifecycle
# header): long enough for our copy and its retries, short enough that users' photos
# do not linger at fal.
FAL_RESULT_RETENTION_SECONDS = env_int("FAL_RESULT_RETENTION_SECONDS", 3600)
# Housekeeping by the worker: finished task results and silent workers' heartbeats go.
TASK_RESULT_RETENTION_DAYS = env_int("TASK_RESULT_RETENTION_DAYS", 7)
WORKER_HEARTBEAT_RETENTION_HOURS = env_int("WORKER_HEARTBEAT_RETENTION_HOURS", 24)
# Threads one worker uses to submit and check in-flight jobs concurrently.
PIPELINE_THREADS = env_int("PIPELINE_THREADS", 16)
# How long a worker's claim on a job lasts before another worker may take the job over.
PIPELINE_LEASE_SECONDS = env_int("PIPELINE_LEASE_SECONDS", 90)
# Offline preview provider (no FAL_KEY): job state files, shared by web and workers. Where
# the media folder is declared shared by every process (MEDIA_ROOT_SHARED), beside it: the
# systemd units give each process a private /tmp, where a job one worker submitted was
# missing for the next worker that checked it. Otherwise the system's temporary folder.
OFFLINE_PROVIDER_DIR = Path(
    os.environ.get("OFFLINE_PROVIDER_DIR", "").strip()
    or (
        MEDIA_ROOT / ".offline-provider"
        if MEDIA_ROOT_SHARED
        else Path(tempfile.gettempdir()) / "stefna-offline-provider"
    )
)
OFFLINE_QUEUE_SECONDS = env_float("OFFLINE_QUEUE_SECONDS", 1.5)
OFFLINE_RUN_SECONDS = env_float("OFFLINE_RUN_SECONDS", 2.5)
# Saving results durably: first retry after this many seconds, doubling up to the max.
MEDIA_PERSIST_RETRY_SECONDS = env_int("MEDIA_PERSIST_RETRY_SECONDS", 15)
MEDIA_PERSIST_RETRY_MAX_SECONDS = env_int("MEDIA_PERSIST_RETRY_MAX_SECONDS", 600)
MAX_RESULT_BYTES = env_int("MAX_RESULT_BYTES", 50 * 1024 * 1024)
# Result images are fetched only over https from public addresses (generation/result_urls.py);
# 1 lifts that for local fakes and tests. check --deploy warns when it is on with DEBUG off.
ALLOW_PRIVATE_RESULT_URLS = env_bool("ALLOW_PRIVATE_RESULT_URLS", False)
RESULT_FETCH_SECONDS = env_int("RESULT_FETCH_SECONDS", 60)

# --- Operations: request ids, logs, errors, metrics (see docs/deploy.md) --------------
# How many reverse proxies in front append to X-Forwarded-For; also whether their
# X-Request-ID is trusted (0: we make every id ourselves).
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
# Outermost, so every response (errors included) carries X-Request-ID and is counted.
MIDDLEWARE[:0] = ["stefna.middleware.MetricsMiddleware", "stefna.middleware.RequestIdMiddleware"]
LOG_FORMAT = (os.environ.get("LOG_FORMAT", "") or "text").strip().lower()
if LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, not {LOG_FORMAT!r}.")
LOGGING["filters"] = {"request_context": {"()": "stefna.logging_json.RequestContextFilter"}}
LOGGING["formatters"]["plain"] = {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"}
LOGGING["formatters"]["json"] = {"()": "stefna.logging_json.JsonFormatter"}
LOGGING["handlers"]["console"] = {
    "class": "logging.StreamHandler",
    "formatter": "json" if LOG_FORMAT == "json" else "plain",
    "filters": ["request_context"],
}
# Django's own default handler for "django" prints plain text in DEBUG; one format only.
LOGGING["loggers"]["django"] = {"handlers": ["console"], "level": "INFO", "propagate": False}
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
SENTRY_DSN = os.environ.get("SENTRY_DSN", "")

from stefna.logging_sentry import sentry_init  # noqa: E402

sentry_init(dsn=SENTRY_DSN, debug=DEBUG)
# --- Payments (credits/payments) --------------------------------------------------------
# Stripe Checkout sells credit packs; the webhook at /api/stripe/webhook grants them.
STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", "")
STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "")
# Where the Stripe SDK sends API calls: tests and mock servers only.
STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", "").rstrip("/")
STRIPE_TIMEOUT_SECONDS = env_int("STRIPE_TIMEOUT_SECONDS", 15)
# A local checkout page that completes purchases without payment, clearly labelled.
OFFLINE_CHECKOUT = env_bool("OFFLINE_CHECKOUT", DEBUG and not STRIPE_SECRET_KEY)
# Checkouts one user may start per hour (each is a Stripe session).
RATE_LIMIT_CHECKOUTS = (env_int("RATE_LIMIT_CHECKOUTS_PER_HOUR", 30), 3600)
# Pending Stripe purchases older than this are reconciled by asking Stripe (the upkeep).
PURCHASE_RECONCILE_AFTER_SECONDS = env_int("PURCHASE_RECONCILE_AFTER_SECONDS", 120)
if STRIPE_SECRET_KEY:
    # The "Buy" form's POST is answered with a redirect to Stripe Checkout, and browsers
    # apply form-action to every redirect of a form's navigation.
    SECURE_CSP["form-action"] = [CSP.SELF, "https://checkout.stripe.com"]

# --- Google sign-in (django-allauth's social account part, OpenID Connect) ------------
# Shown only when both are set. GOOGLE_OIDC_SERVER_URL is Google's issuer; tests and
# staging point it at another OpenID Connect server speaking the same protocol.
GOOGLE_CLIENT_ID = os.environ.get("GOOGLE_CLIENT_ID", "")
GOOGLE_CLIENT_SECRET = os.environ.get("GOOGLE_CLIENT_SECRET", "")
GOOGLE_OIDC_SERVER_URL = os.environ.get("GOOGLE_OIDC_SERVER_URL", "") or "https://accounts.google.com"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
SOCIALACCOUNT_PROVIDERS = {
    "openid_connect": {
        "OAUTH_PKCE_ENABLED": True,
        "APPS": [
            {
                "provider_id": "google",
                "name": "Google",
                "client_id": GOOGLE_CLIENT_ID,
                "secret": GOOGLE_CLIENT_SECRET,
                # Identity comes from the signed ID token alone (checked by stefna.social).
                "settings": {"server_url": GOOGLE_OIDC_SERVER_URL, "fetch_userinfo": False},
            }
        ]
        if GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET
        else [],
    }
}
if GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET:
    # "Continue with Google" is a form POST that our server answers with a redirect to
    # Google's authorize page; browsers hold that redirect to the page's form-action.
    # Added to what is there (Stripe Checkout's origin, when payments are on).
    _google = urlparse(GOOGLE_OIDC_SERVER_URL)
    _form_action = SECURE_CSP["form-action"]
    assert isinstance(_form_action, list)
    SECURE_CSP["form-action"] = [*_form_action, f"{_google.scheme}://{_google.netloc}"]
SOCIALACCOUNT_ADAPTER = "stefna.social.SocialAccountAdapter"
ACCOUNT_ADAPTER = "stefna.social.AccountAdapter"
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_LOGIN_ON_GET = False
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_REQUESTS_TIMEOUT = 10
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*"]
ACCOUNT_UNIQUE_EMAIL = True
# Google vouches for the address (email_verified); unverified ones are refused outright.
ACCOUNT_EMAIL_VERIFICATION = "none"
