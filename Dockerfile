# syntax=docker/dockerfile:1
# Stefna's image: `docker build -t stefna --build-arg STEFNA_RELEASE=$(git rev-parse --short HEAD) .`
# One image for every role: the web server (default command), `python manage.py db_worker`
# and the release step (`python manage.py migrate`). See docs/deploy.md and compose.yaml.
# No secret is baked in: configuration comes from the environment at run time.

ARG PYTHON_IMAGE=python:3.13-slim-trixie

# --- build: dependencies from the hashed lock, then static files -----------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
RUN python -m venv /opt/venv
COPY requirements.lock ./
# Every file is checked against the lock's hashes; anything not in the lock is refused.
RUN /opt/venv/bin/pip install --require-hashes --no-deps -r requirements.lock
COPY . .
# collectstatic needs settings, not secrets: a throwaway key that lives only in this step.
RUN DEBUG=0 SECRET_KEY=collectstatic-only-not-a-secret /opt/venv/bin/python manage.py collectstatic --no-input --verbosity 0

# --- runtime: the app, its virtualenv and its static files; nothing else ---------------
FROM ${PYTHON_IMAGE} AS runtime
ARG STEFNA_RELEASE=unknown
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=stefna.settings \
    STEFNA_RELEASE=${STEFNA_RELEASE} \
    PORT=8000 \
    MEDIA_ROOT=/data/media \
    OFFLINE_PROVIDER_DIR=/data/offline \
    PROMETHEUS_MULTIPROC_DIR=/tmp/stefna-prometheus
RUN groupadd --system --gid 10001 stefna \
    && useradd --system --uid 10001 --gid stefna --home-dir /app --shell /usr/sbin/nologin stefna \
    && mkdir -p /data/media /data/offline \
    && chown -R stefna:stefna /data
COPY --from=build /opt/venv /opt/venv
# The code stays owned by root: the app (uid 10001, "stefna") writes only to /data and /tmp.
COPY --from=build /app /app
WORKDIR /app
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["python", "deploy/healthcheck.py"]
CMD ["gunicorn", "-c", "gunicorn.conf.py"]
