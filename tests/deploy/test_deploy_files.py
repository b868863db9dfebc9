"""The deployment files are exact: each is checked by the tool that reads it where the
machine has one (hadolint, nginx -t, systemd-analyze), and against the app's own limits.

No container engine runs here, so the image and compose.yaml are linted and read, and the
same topology (2 web processes on one port, 2 workers, PostgreSQL, Redis) runs for real
in `make smoke`.
"""

from __future__ import annotations

import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.utils import timezone

from generation.models import WorkerHeartbeat
from tests.databases import database_url
from tests.deploy.nginx_site import site_config

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def test_the_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(VENV_BIN / "hadolint")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_is_slim_trixie_non_root_healthchecked_and_holds_no_secret():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.13-slim-trixie" in dockerfile
    assert dockerfile.count("FROM ${PYTHON_IMAGE}") == 2, "multi-stage: build and runtime"
    assert re.search(r"^USER 10001:10001$", dockerfile, re.M)
    assert "HEALTHCHECK" in dockerfile and "deploy/healthcheck.py" in dockerfile
    assert "--require-hashes" in dockerfile and "collectstatic" in dockerfile
    env_block = " ".join(re.findall(r"^ENV (.*?)(?:\n(?!\s)|\Z)", dockerfile, re.M | re.S))
    assert not re.search(r"(SECRET|PASSWORD|TOKEN|_KEY)\w*=", env_block), "no secret is baked into a layer"
    ignored = (ROOT / ".dockerignore").read_text().split()
    for never in (".env", ".git", ".venv", "media", "db.sqlite3*"):
        assert never in ignored


def test_the_healthcheck_probe_asks_for_healthz_with_an_allowed_host(live_server, transactional_db, settings):
    settings.ALLOWED_HOSTS = ["stefna.example.com"]
    WorkerHeartbeat.objects.create(worker_id="probe", started_at=timezone.now(), last_seen_at=timezone.now())
    port = live_server.url.rsplit(":", 1)[1]
    env = {**os.environ, "PORT": port, "ALLOWED_HOSTS": ".stefna.example.com,other.example"}
    probe = subprocess.run([sys.executable, str(ROOT / "deploy/healthcheck.py")], env=env, timeout=30)
    assert probe.returncode == 0
    # No worker: /healthz still answers 200 ("degraded"; CONTRACT: 503 only without the
    # database), so the web container stays in service while jobs wait for a worker.
    WorkerHeartbeat.objects.all().delete()
    probe = subprocess.run([sys.executable, str(ROOT / "deploy/healthcheck.py")], env=env, timeout=30)
    assert probe.returncode == 0
    # A host the site does not serve is refused (400): the probe says so.
    env["ALLOWED_HOSTS"] = "other.example"
    probe = subprocess.run([sys.executable, str(ROOT / "deploy/healthcheck.py")], env=env, timeout=30)
    assert probe.returncode == 1


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_has_the_services_and_the_worker_scales():
    services = compose()["services"]
    assert set(services) == {"db", "redis", "migrate", "web", "worker"}
    worker = services["worker"]
    # `--scale worker=3` needs no fixed name and no published port.
    assert "container_name" not in worker and "ports" not in worker
    assert worker["command"] == ["python", "manage.py", "db_worker"]
    # Published on this host only unless asked: the preview's SECRET_KEY is in this file.
    assert services["web"]["ports"] == ["${STEFNA_BIND:-127.0.0.1}:${STEFNA_PORT:-8000}:8000"]
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert "data:/data" in services[name]["volumes"], "web and workers share photos and offline jobs"


def test_compose_runs_the_preview_mode_with_no_keys():
    environment = compose()["services"]["web"]["environment"]
    assert environment["DEBUG"] == "0"
    assert environment["FAL_KEY"] == "${FAL_KEY:-}" and environment["CLOUDINARY_URL"] == "${CLOUDINARY_URL:-}"
    assert environment["SECRET_KEY"].startswith("${SECRET_KEY-"), "works with no .env, overridable"
    assert environment["MEDIA_ROOT_SHARED"] == "1"


def test_compose_passes_every_variable_of_a_dot_env_to_the_app():
    # The listed ones are interpolated; anything else an operator sets in .env (HSTS,
    # Stripe, Google, SITE_URL...) reaches web, workers and migrate through env_file.
    services = compose()["services"]
    for name in ("migrate", "web", "worker"):
        assert services[name]["env_file"] == [{"path": ".env", "required": False}]


def compose_environment(dot_env: dict[str, str]) -> dict[str, str]:
    """The app services' environment as compose makes it: env_file `.env`, then
    `environment:` with its ${NAME:-default} (unset or blank) and ${NAME-default} (unset
    only) read from that same .env (compose interpolates from the project's .env)."""

    def interpolate(value: str) -> str:
        def one(match: re.Match[str]) -> str:
            name, operator, default = match["name"], match["operator"], match["default"] or ""
            if operator == ":-":
                return dot_env.get(name) or default
            if operator == "-":
                return dot_env.get(name, default)
            return dot_env.get(name, "")

        return re.sub(r"\$\{(?P<name>[A-Z][A-Z0-9_]*)(?:(?P<operator>:?-)(?P<default>[^}]*))?\}", one, value)

    environment = {name: interpolate(str(value)) for name, value in compose()["services"]["web"]["environment"].items()}
    return {**dot_env, **environment}


def test_a_compose_env_started_from_the_example_keeps_cookies_secure():
    """docs/deploy.md: write .env starting from .env.example, whose blank cookie lines mean
    "on when DEBUG is off". compose turned a blank value into 0, so a site whose .env kept
    them blank sent its session and CSRF cookies over plain http too (and compose's release
    step runs no `check --deploy` to warn). Only the keyless preview (no .env) turns them off."""
    from tests.deploy.test_env_example import parse_env_file

    script = "import django; django.setup(); from django.conf import settings as s; print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE)"

    def cookie_flags(dot_env: dict[str, str]) -> list[str]:
        env = {**os.environ, **compose_environment(dot_env), "DATABASE_URL": "", "REDIS_URL": ""}
        env["DJANGO_SETTINGS_MODULE"] = "stefna.settings"
        run = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 0, run.stderr
        return run.stdout.split()

    example = parse_env_file(ROOT / ".env.example") | {"SECRET_KEY": "compose-test-secret-key"}
    assert cookie_flags(example) == ["True", "True"]
    assert cookie_flags({}) == ["False", "False"], "the preview on http://localhost keeps its cookies"


def test_a_compose_env_with_a_blank_secret_key_refuses_to_start():
    """CONTRACT: SECRET_KEY is required when DEBUG is off. compose filled a blank one (as
    .env.example has it) with the preview's key, which anyone can read in compose.yaml: a
    site whose .env forgot it signed with a public key. The preview (no .env) keeps it."""
    from tests.deploy.test_env_example import parse_env_file

    def start(dot_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **compose_environment(dot_env), "DATABASE_URL": "", "REDIS_URL": ""}
        env["DJANGO_SETTINGS_MODULE"] = "stefna.settings"
        script = "import django; django.setup()"
        return subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )

    refused = start(parse_env_file(ROOT / ".env.example"))
    assert refused.returncode != 0 and "SECRET_KEY must be set" in refused.stderr
    assert start({}).returncode == 0, "the keyless preview starts"


def test_the_compose_worker_healthcheck_vouches_only_for_its_own_container(transactional_db):
    import socket

    from django.utils import timezone

    from generation.models import WorkerHeartbeat

    command = compose()["services"]["worker"]["healthcheck"]["test"]
    assert command[:6] == ["CMD", "python", "manage.py", "shell", "--verbosity=0", "-c"]
    env = {**os.environ, "DATABASE_URL": database_url(), "DEBUG": "1"}

    def healthy() -> bool:
        run = subprocess.run([sys.executable, *command[2:]], cwd=ROOT, env=env, capture_output=True, timeout=60)
        assert run.returncode in (0, 1), run.stderr
        return run.returncode == 0

    now = timezone.now()
    WorkerHeartbeat.objects.create(worker_id="other", hostname="another-container", started_at=now, last_seen_at=now)
    assert not healthy(), "another container's fresh heartbeat vouches for this one"
    WorkerHeartbeat.objects.create(
        worker_id="mine", hostname=socket.gethostname()[:200], started_at=now, last_seen_at=now
    )
    assert healthy()


def test_compose_gives_gunicorn_its_graceful_stop():
    gunicorn = load_gunicorn_config({})
    grace = int(compose()["services"]["web"]["stop_grace_period"].rstrip("s"))
    assert grace > gunicorn["graceful_timeout"]


def test_a_stopping_worker_may_finish_the_longest_work_in_hand():
    """A status call to fal then a result's download, the longest a pipeline task runs by
    default; cut short, the job waits out its lease before another worker resumes it."""
    longest = settings.FAL_HTTP_TIMEOUT_SECONDS + settings.RESULT_FETCH_SECONDS
    grace = int(compose()["services"]["worker"]["stop_grace_period"].rstrip("s"))
    unit = (ROOT / "deploy/systemd/stefna-worker@.service").read_text()
    stop = int(re.search(r"^TimeoutStopSec=(\d+)$", unit, re.MULTILINE).group(1))
    assert grace >= longest
    assert stop >= longest


def load_gunicorn_config(env: dict[str, str]) -> dict:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_gunicorn_serves_asgi_with_uvicorn_worker_and_bounded_timeouts():
    config = load_gunicorn_config({"WEB_CONCURRENCY": "", "GENERATE_IMAGE_WAIT_SECONDS": "60"})
    assert config["worker_class"] == "stefna.asgi_worker.UvicornWorker"
    # The uvicorn-worker package's worker (not the deprecated uvicorn.workers), extended.
    from gunicorn.util import load_class
    from uvicorn_worker import UvicornWorker

    assert issubclass(load_class(config["worker_class"]), UvicornWorker)
    assert config["wsgi_app"] == "stefna.asgi:application"
    assert config["workers"] >= 2
    assert config["graceful_timeout"] == 70, "a waiting studio call gets its answer during a deploy"
    assert 0 < config["timeout"] <= 60
    assert load_gunicorn_config({"WEB_CONCURRENCY": "5"})["workers"] == 5


def test_the_readme_and_procfile_run_the_tested_production_command():
    readme = (ROOT / "README.md").read_text()
    assert "gunicorn -c gunicorn.conf.py" in readme
    assert "uvicorn.workers" not in readme, "the deprecated worker class"
    procfile = dict(
        line.split(": ", 1)
        for line in (ROOT / "Procfile").read_text().splitlines()
        if ": " in line and not line.startswith("#")
    )
    assert set(procfile) == {"web", "worker", "release"}
    assert procfile["web"].endswith("gunicorn -c gunicorn.conf.py")
    assert procfile["worker"] == "python manage.py db_worker"
    assert "migrate --no-input" in procfile["release"]


def test_nginx_allows_exactly_the_body_size_django_allows():
    nginx = (ROOT / "deploy/nginx.conf").read_text()
    megabytes = int(re.search(r"client_max_body_size (\d+)m;", nginx).group(1))
    assert megabytes * 1024 * 1024 == settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    params = (ROOT / "deploy/stefna_proxy_params").read_text()
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in params
    assert "X-Request-ID $request_id" in params


def test_nginx_streams_both_event_routes_unbuffered_and_nothing_else():
    """The API's event stream and the status page's: no buffering, reads of an hour."""
    from django.urls import reverse

    site = (ROOT / "deploy/nginx.conf").read_text()
    [(pattern, block)] = [
        (found.group(1), found.group(2))
        for found in re.finditer(r"location ~ (\S+) \{(.*?)\n    \}", site, re.S)
        if "proxy_buffering off" in found.group(2)
    ]
    some_id = "6fd9ee47-fc3c-40e3-b837-647cf1aad35f"
    assert re.match(pattern, f"/api/generations/{some_id}/events")
    assert re.match(pattern, reverse("generation_events", args=[some_id]))
    assert not re.match(pattern, reverse("generation_card", args=[some_id]))
    assert "proxy_read_timeout 1h" in block


@pytest.mark.skipif(not shutil.which("nginx"), reason="nginx is not installed (.ci/run installs it)")
def test_nginx_accepts_the_config(tmp_path):
    config, _ = site_config(tmp_path)
    result = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_the_systemd_units_verify(tmp_path):
    units = sorted((ROOT / "deploy/systemd").iterdir())
    assert {unit.name for unit in units} >= {"stefna-web.service", "stefna-web.socket", "stefna-worker@.service"}
    for unit in units:
        # Point the paths at this checkout so verify finds the executables it names.
        text = unit.read_text().replace("/srv/stefna/.venv/bin", str(VENV_BIN)).replace("/srv/stefna", str(ROOT))
        text = text.replace("EnvironmentFile=/etc/stefna/stefna.env", f"EnvironmentFile=-{tmp_path}/stefna.env")
        (tmp_path / unit.name).write_text(text)
    worker = tmp_path / "stefna-worker@2.service"
    worker.symlink_to(tmp_path / "stefna-worker@.service")
    names = [str(tmp_path / name) for name in ("stefna-web.service", "stefna-web.socket", "stefna-migrate.service")]
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names, str(worker)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        # Outside a booted systemd (CI containers) these are about the host, not the units.
        if line.strip() and not re.search(r"User|Group|stefna-workers.target|Failed to (connect|open)|bus|PartOf", line)
    ]
    assert not problems, "\n".join(problems)
    assert "--worker-id %H-%i" in (ROOT / "deploy/systemd/stefna-worker@.service").read_text()


def test_the_grafana_dashboard_charts_series_that_metrics_exposes():
    import json

    dashboard = json.loads((ROOT / "deploy/grafana-dashboard.json").read_text())
    expressions = " ".join(target["expr"] for panel in dashboard["panels"] for target in panel["targets"])
    for series in re.findall(r"stefna_[a-z_]+", expressions):
        base = re.sub(r"_(bucket|total|sum|count)$", "", series)
        assert base in (ROOT / "stefna/metrics.py").read_text(), f"the dashboard charts {series}, which nothing exposes"


def _unit_entries(name: str) -> dict[str, list[str]]:
    """Wants= and WantedBy= of one of our units (a template's instance reads the template)."""
    template = re.sub(r"@[^.]+\.", "@.", name)
    path = ROOT / "deploy/systemd" / template
    if not path.exists():
        return {}
    entries: dict[str, list[str]] = {"Wants": [], "WantedBy": []}
    for key, value in re.findall(r"(?m)^(Wants|WantedBy)=(.*)$", path.read_text()):
        entries[key] += value.replace("%i", name.partition("@")[2].split(".")[0]).split()
    return entries


def _started_at_boot(enabled: set[str]) -> set[str]:
    """What systemd starts at boot once `enabled` are enabled: multi-user.target, what it
    wants, and every enabled unit linked (its WantedBy=) to something started, in turn."""
    started, todo = set(), ["multi-user.target"]
    while todo:
        unit = todo.pop()
        if unit in started:
            continue
        started.add(unit)
        todo += _unit_entries(unit).get("Wants", [])
        todo += [other for other in enabled if unit in _unit_entries(other).get("WantedBy", [])]
    return started


def test_the_documented_enable_commands_start_web_and_workers_after_a_reboot():
    """`systemctl enable` links a unit to its WantedBy= target, which must itself start at
    boot: the workers were linked only to stefna-workers.target, which nothing enabled, so
    after a reboot no worker ran (no generation was ever processed)."""
    docs = (ROOT / "README.md").read_text() + (ROOT / "docs/deploy.md").read_text()
    commands = re.findall(r"systemctl enable --now ([^`\n]+)", docs)
    assert commands
    for command in commands:
        names = []
        for word in command.split():
            brace = re.fullmatch(r"(.*)\{(.*)\}(.*)", word)  # the shell's brace expansion
            names += [f"{brace[1]}{part}{brace[3]}" for part in brace[2].split(",")] if brace else [word]
        units = {name if "." in name else f"{name}.service" for name in names}
        assert units <= _started_at_boot(units), f"`systemctl enable --now {command}`: not started at boot"


def _exec_starts(unit: str) -> list[str]:
    text = (ROOT / "deploy/systemd" / unit).read_text()
    return [line.replace("/srv/stefna/.venv/bin/", "") for line in re.findall(r"(?m)^ExecStart=(.*)$", text)]


def test_every_topology_starts_the_same_web_worker_and_release_commands():
    """The image (and compose's web, which runs the image's command), the Procfile and the
    systemd units start one web command, one worker command and one migration step."""
    import json

    dockerfile = (ROOT / "Dockerfile").read_text()
    image_command = " ".join(json.loads(re.search(r"(?m)^CMD (\[.*\])$", dockerfile).group(1)))
    procfile = dict(
        line.split(": ", 1)
        for line in (ROOT / "Procfile").read_text().splitlines()
        if ": " in line and not line.startswith("#")
    )
    services = compose()["services"]
    web = "gunicorn -c gunicorn.conf.py"
    assert image_command == web and "command" not in services["web"]
    assert procfile["web"].split()[-3:] == web.split()
    assert _exec_starts("stefna-web.service") == [web]

    worker = "python manage.py db_worker"
    assert " ".join(services["worker"]["command"]) == worker == procfile["worker"]
    assert _exec_starts("stefna-worker@.service") == [f"{worker} --worker-id %H-%i"]

    migrate = "python manage.py migrate --no-input"
    assert " ".join(services["migrate"]["command"]) == migrate
    assert procfile["release"].split(" && ")[0] == migrate
    assert _exec_starts("stefna-migrate.service")[0] == migrate
