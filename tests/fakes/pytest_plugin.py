"""Pytest wiring for the fakes (registered from the root conftest.py).

fal-client reads FAL_QUEUE_RUN_HOST/FAL_RUN_HOST when it is imported, and httpx
reads SSL_CERT_FILE when a client is made, so `pytest_configure` (before any test
module imports anything) picks a free port for the fake fal, makes a throwaway CA
and points all three variables at them, once per test process (xdist-safe).

Fixtures:
- `fake_fal`: the running fake fal (session server, knobs reset per test), with
  settings switched to "fal configured" (FAL_KEY, OFFLINE_MODE off, the fake's JWKS
  URL, a fast poll interval). Usage: `fake_fal.fail_submit("fal-ai/ghiblify", status=500)`.
- `fake_cloudinary`: a running fake Cloudinary with settings pointing at it
  (CLOUDINARY_* incl. upload_prefix, CLOUDINARY_ENABLED on).
- `fake_stripe`: a running fake Stripe API (tests/fakes/stripe.py), the SDK pointed at it
  (STRIPE_API_BASE) with test keys and the offline checkout off.
- `fake_smtp`: a running fake SMTP server (tests/fakes/smtp.py) as Django's default
  mailer (MAILERS, plain SMTP: no TLS), instead of the test outbox.
- `fake_s3`: a running fake S3 bucket (tests/fakes/s3.py) as Django's default storage.
- `offline_provider_dir` (autouse): the offline provider's state files go to the
  test's tmp dir, with zero simulated queue/run time, and a zero poll interval (a
  job is due again as soon as it was looked at, so tests run rounds without sleeping).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.fakes.certs import make_certificates
from tests.ports import free_port

FAKE_FAL_KEY = "fake-key-id:fake-key-secret"  # noqa: S105 - a test value


def pytest_configure(config: pytest.Config) -> None:
    cert_dir = Path(tempfile.mkdtemp(prefix="stefna-fake-certs-"))
    certs = make_certificates(cert_dir)
    port = free_port()
    os.environ["STEFNA_FAKE_FAL_PORT"] = str(port)
    os.environ["STEFNA_FAKE_CERT_DIR"] = str(cert_dir)
    os.environ["FAL_QUEUE_RUN_HOST"] = f"127.0.0.1:{port}"
    os.environ["FAL_RUN_HOST"] = f"127.0.0.1:{port}"
    os.environ["SSL_CERT_FILE"] = str(certs.ca_path)


@pytest.fixture(scope="session")
def fake_fal_server():
    from tests.fakes.fal import FakeFal

    cert_dir = Path(os.environ["STEFNA_FAKE_CERT_DIR"])
    server = FakeFal(port=int(os.environ["STEFNA_FAKE_FAL_PORT"]), certs=make_certificates(cert_dir))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake_fal(fake_fal_server, settings):
    fake_fal_server.reset()
    fake_fal_server.accept_connections()
    settings.FAL_KEY = FAKE_FAL_KEY
    settings.OFFLINE_MODE = False
    settings.FAL_WEBHOOK_JWKS_URL = fake_fal_server.jwks_url
    yield fake_fal_server
    fake_fal_server.accept_connections()
    fake_fal_server.reset()


@pytest.fixture(scope="session")
def fake_cloudinary_server():
    from tests.fakes.cloudinary import FakeCloudinary

    server = FakeCloudinary(ca_path=os.environ["SSL_CERT_FILE"])
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake_cloudinary(fake_cloudinary_server, settings):
    fake_cloudinary_server.reset()
    settings.CLOUDINARY_URL = fake_cloudinary_server.cloudinary_url
    settings.CLOUDINARY_CLOUD_NAME = fake_cloudinary_server.cloud_name
    settings.CLOUDINARY_API_KEY = fake_cloudinary_server.api_key
    settings.CLOUDINARY_API_SECRET = fake_cloudinary_server.api_secret
    settings.CLOUDINARY_UPLOAD_PREFIX = fake_cloudinary_server.url
    settings.CLOUDINARY_ENABLED = True
    settings.CLOUDINARY_TIMEOUT_SECONDS = 2
    yield fake_cloudinary_server
    fake_cloudinary_server.reset()


@pytest.fixture(autouse=True)
def offline_provider_dir(settings, tmp_path):
    settings.OFFLINE_PROVIDER_DIR = tmp_path / "offline-provider"
    settings.OFFLINE_QUEUE_SECONDS = 0
    settings.OFFLINE_RUN_SECONDS = 0
    settings.FAL_POLL_INTERVAL_SECONDS = 0
    settings.FAL_POLL_MAX_INTERVAL_SECONDS = 0
    return settings.OFFLINE_PROVIDER_DIR


@pytest.fixture(scope="session")
def fake_stripe_server():
    from tests.fakes.stripe import FakeStripe

    server = FakeStripe()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake_stripe(fake_stripe_server, settings):
    """A running fake Stripe API with settings pointing the SDK at it (keys are test values)."""
    from tests.fakes.stripe import SECRET_KEY, WEBHOOK_SECRET

    fake_stripe_server.reset()
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_API_BASE = fake_stripe_server.url
    settings.OFFLINE_CHECKOUT = False
    yield fake_stripe_server
    fake_stripe_server.reset()


@pytest.fixture(scope="session")
def fake_smtp_server():
    from tests.fakes.smtp import FakeSMTP

    server = FakeSMTP()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake_smtp(fake_smtp_server, settings):
    """A running fake SMTP server that Django's email goes to (as stefna/settings.py fills
    MAILERS from EMAIL_HOST and friends, with TLS off)."""
    fake_smtp_server.reset()
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {
                "host": fake_smtp_server.host,
                "port": fake_smtp_server.port,
                "username": "",
                "password": "",
                "use_tls": False,
                "use_ssl": False,
                "timeout": 5,
            },
        }
    }
    yield fake_smtp_server
    fake_smtp_server.reset()


@pytest.fixture(scope="session")
def fake_s3_server():
    from tests.fakes.s3 import FakeS3

    server = FakeS3()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake_s3(fake_s3_server, settings):
    """A running fake S3 bucket (tests/fakes/s3.py) as Django's default storage, the way
    settings.py configures a bucket (PrivateS3Storage, path-style addresses)."""
    from tests.fakes.s3 import ACCESS_KEY, REGION, SECRET_KEY

    fake_s3_server.reset()
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "stefna.private_storage.PrivateS3Storage",
            "OPTIONS": {
                "bucket_name": fake_s3_server.bucket,
                "endpoint_url": fake_s3_server.url,
                "region_name": REGION,
                "addressing_style": "path",
                "access_key": ACCESS_KEY,
                "secret_key": SECRET_KEY,
                "file_overwrite": False,
            },
        },
    }
    settings.STORAGE_PUBLIC_URLS = False
    yield fake_s3_server
    fake_s3_server.reset()
