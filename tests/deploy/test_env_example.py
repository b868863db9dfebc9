"""`.env.example` is a real env file: comments on their own lines, unquoted values, and
every variable the code reads listed, so `docker --env-file`, compose's `env_file` and
systemd's `EnvironmentFile` read it as it is."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")
# Where the app and its server config read the environment.
SOURCES = [*ROOT.glob("stefna/**/*.py"), *ROOT.glob("generation/**/*.py"), *ROOT.glob("credits/**/*.py"),
           *ROOT.glob("presets/**/*.py"), ROOT / "gunicorn.conf.py"]  # fmt: skip
READS = re.compile(
    r"""(?:os\.environ\.get|os\.environ\[|os\.getenv|env_bool|env_int|env_str|env_float|env_list|_env_int|_env_float)\(?\s*["']([A-Z][A-Z0-9_]+)["']"""
)
# Read by the code but not Stefna's to configure: Django's own, and set by the tools.
NOT_SETTINGS = {"DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE", "STEFNA_FAKE_FAL_PORT", "STEFNA_FAKE_CERT_DIR"}


def parse_env_file(path: Path) -> dict[str, str]:
    """The way `docker run --env-file` reads a file: `#` starts a comment only at the
    start of a line; everything after the first `=` is the value, quotes and all."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        match = LINE.match(raw)
        assert match, f".env.example:{number}: not NAME=value: {raw!r}"
        value = match["value"]
        assert "#" not in value, f".env.example:{number}: an inline comment becomes part of the value: {raw!r}"
        assert value == value.strip(), f".env.example:{number}: spaces around the value are kept by docker: {raw!r}"
        assert not value.startswith(("'", '"')), f".env.example:{number}: docker keeps the quotes: {raw!r}"
        assert match["name"] not in values, f".env.example:{number}: {match['name']} twice"
        values[match["name"]] = value
    return values


def commented_out(path: Path) -> set[str]:
    """`# NAME=` lines: listed and explained, but left unset so that the image or a unit keeps
    its value (test_the_example_leaves_alone_what_the_units_and_the_image_set)."""
    return set(re.findall(r"(?m)^# ([A-Z][A-Z0-9_]*)=", path.read_text()))


def test_the_example_parses_as_an_env_file():
    values = parse_env_file(ROOT / ".env.example")
    assert values["DEBUG"] == "0" and values["SECRET_KEY"] == ""
    assert values["LOG_FORMAT"] == "text" and values["TRUSTED_PROXY_COUNT"] == "0"


def test_every_variable_the_code_reads_is_listed():
    listed = set(parse_env_file(ROOT / ".env.example")) | commented_out(ROOT / ".env.example")
    read = {name for path in SOURCES if "tests" not in path.parts for name in READS.findall(path.read_text())}
    missing = sorted(read - listed - NOT_SETTINGS)
    assert not missing, f"add these to .env.example: {missing}"


# CONTRACT.md's environment table: each variable and the default it names ("" = unset,
# or a default that depends on DEBUG and is described in the comment above it).
CONTRACT_DEFAULTS = {
    "SECRET_KEY": "", "DEBUG": "0", "ALLOWED_HOSTS": "", "CSRF_TRUSTED_ORIGINS": "", "DATABASE_URL": "",
    "FAL_KEY": "", "FAL_WEBHOOK_BASE_URL": "", "FAL_WEBHOOK_JWKS_URL": "", "CLOUDINARY_URL": "",
    "CLOUDINARY_CLOUD_NAME": "", "CLOUDINARY_API_KEY": "", "CLOUDINARY_API_SECRET": "", "DAILY_CREDITS": "30",
    "REDIS_URL": "", "TRUSTED_PROXY_COUNT": "0", "ALLOW_PRIVATE_RESULT_URLS": "0",
    "FAL_RESULT_RETENTION_SECONDS": "3600", "STRIPE_SECRET_KEY": "", "STRIPE_WEBHOOK_SECRET": "",
    "STRIPE_API_BASE": "", "OFFLINE_CHECKOUT": "", "FAL_MAX_CONCURRENT": "10", "GOOGLE_CLIENT_ID": "",
    "GOOGLE_CLIENT_SECRET": "", "METRICS_TOKEN": "", "SENTRY_DSN": "", "LOG_FORMAT": "text",
}  # fmt: skip


def test_every_contract_variable_is_listed_with_the_contracts_default():
    values = parse_env_file(ROOT / ".env.example")
    assert {name: values.get(name) for name in CONTRACT_DEFAULTS} == CONTRACT_DEFAULTS


def test_every_variable_is_explained_by_a_comment_of_its_own():
    """A variable right under a section header is undocumented: each variable (or group of
    them, such as the three Cloudinary parts) comes after a comment saying what it is."""
    lines = (ROOT / ".env.example").read_text().splitlines()
    unexplained = []
    for number, line in enumerate(lines):
        if not LINE.match(line):
            continue
        above = number - 1
        while above >= 0 and LINE.match(lines[above]):
            above -= 1
        comment = lines[above] if above >= 0 else ""
        if not comment.startswith("#") or comment.startswith("# ---"):
            unexplained.append(line.split("=")[0])
    assert unexplained == []


def example_environment() -> dict[str, str]:
    values = parse_env_file(ROOT / ".env.example")
    env = {key: value for key, value in os.environ.items() if key not in values}
    env.update(values)
    env.update(SECRET_KEY="env-example-test-secret-key", ALLOWED_HOSTS="stefna.example.com")
    return env


def test_the_example_as_an_environment_starts_the_app():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT, env=example_environment(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_blank_value_in_the_example_means_the_default():
    """The example's header says blank means unset: a blank JWKS address once meant
    every fal callback was refused, and a blank HOST/PORT a server that would not start."""
    show = (
        "from django.conf import settings as s; "
        "print(s.FAL_WEBHOOK_JWKS_URL, s.DEFAULT_FROM_EMAIL, s.MEDIA_URL, s.LOG_LEVEL, sep='|')"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", show],
        cwd=ROOT, env=example_environment(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    jwks, sender, media_url, log_level = result.stdout.strip().splitlines()[-1].split("|")
    assert jwks == "https://rest.alpha.fal.ai/.well-known/jwks.json"
    assert sender == "Stefna <no-reply@stefna.local>"
    assert (media_url, log_level) == ("/media/", "INFO")

    config = "import runpy; c = runpy.run_path('gunicorn.conf.py'); print(c['bind'], c['loglevel'], c['preload_app'])"
    result = subprocess.run(
        [sys.executable, "-c", config], cwd=ROOT, env=example_environment(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == ["0.0.0.0:8000", "info", "True"]


def test_the_container_probe_reads_a_blank_port_as_the_default():
    env = example_environment() | {"PORT": ""}
    probe = "import sys; sys.path.insert(0, 'deploy'); import healthcheck, http.client; " + (
        "http.client.HTTPConnection.request = lambda self, *a, **k: print(self.port) or sys.exit(0); healthcheck.main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "8000"


def test_the_example_can_be_sourced_by_a_shell():
    """The header promises `set -a; . ./.env.example`: an unquoted value with a space or a
    `<` would stop the shell."""
    result = subprocess.run(
        ["sh", "-c", "set -a; . ./.env.example; echo \"$DEBUG|$DEFAULT_FROM_EMAIL|$HOST\""],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0||"


def unit_environment(unit: str) -> dict[str, str]:
    """What systemd gives a unit's process with .env.example installed as its
    EnvironmentFile (docs/deploy.md): the unit's Environment= lines, then the file's,
    which win (systemd.exec(5): "Settings from these files override settings made with
    Environment=")."""
    text = (ROOT / "deploy/systemd" / unit).read_text()
    env = dict(re.findall(r"(?m)^Environment=([A-Z][A-Z0-9_]*)=(.*)$", text))
    env.update(parse_env_file(ROOT / ".env.example"))
    return env


def image_environment() -> dict[str, str]:
    """The runtime stage's ENV of the Dockerfile (its own values, $PATH aside)."""
    runtime = (ROOT / "Dockerfile").read_text().split(" AS runtime", 1)[1]
    block = re.search(r"(?m)^ENV (.*?)(?:\n(?!\s)|\Z)", runtime, re.S)
    assert block, "the runtime stage sets its environment"
    pairs = re.findall(r"([A-Z][A-Z0-9_]*)=(\S+)", block.group(1).replace("\\\n", " "))
    return {name: value for name, value in pairs if name != "PATH"}


def test_the_example_leaves_alone_what_the_units_and_the_image_set():
    """A blank line in the env file is a value, not "unset", to the layers beneath it: it
    overrode the web unit's GUNICORN_BIND (gunicorn then listened on 0.0.0.0:8000, past
    nginx) and PROMETHEUS_MULTIPROC_DIR, and in a container the image's MEDIA_ROOT (photos
    then went to the read-only code folder). Such variables are listed commented out."""
    assigned = set(parse_env_file(ROOT / ".env.example"))
    documented = commented_out(ROOT / ".env.example")
    units = {name for unit in (ROOT / "deploy/systemd").glob("*.service") for name in unit_environment(unit.name)}
    layered = (units - assigned) | set(image_environment())
    layered -= {"PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "DJANGO_SETTINGS_MODULE"}
    for name in sorted(layered):
        assert name not in assigned, f".env.example assigns {name}, which a unit or the image sets: comment it out"
        assert name in documented, f"{name} is set by a unit or the image: list it in .env.example, commented out"


def test_the_web_unit_keeps_its_address_with_the_example_installed():
    env = {**example_environment(), **unit_environment("stefna-web.service")}
    env["SECRET_KEY"] = "env-example-test-secret-key"
    config = "import runpy, os; c = runpy.run_path('gunicorn.conf.py'); print(c['bind'], os.environ['PROMETHEUS_MULTIPROC_DIR'])"
    result = subprocess.run(
        [sys.executable, "-c", config], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == ["127.0.0.1:8000", "/run/stefna-web/prometheus"]


def test_gunicorn_starts_with_the_example_as_its_environment():
    """gunicorn reads WEB_CONCURRENCY before gunicorn.conf.py, and a blank value stopped it
    at start (`int('')`): stefna-web failed with .env.example as its EnvironmentFile."""
    gunicorn = Path(sys.executable).parent / "gunicorn"
    for env in (example_environment(), {**example_environment(), **unit_environment("stefna-web.service")}):
        env.update(SECRET_KEY="env-example-test-secret-key", ALLOWED_HOSTS="stefna.example.com")
        result = subprocess.run(
            [str(gunicorn), "-c", "gunicorn.conf.py", "--check-config"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr


def test_a_container_with_the_example_as_its_env_file_keeps_the_image_folders():
    """compose's `env_file: .env` (started from .env.example) and `docker run --env-file`
    override the image's ENV: MEDIA_ROOT must stay /data/media, on the shared volume."""
    env = {**example_environment(), **image_environment(), **parse_env_file(ROOT / ".env.example")}
    env.update(SECRET_KEY="env-example-test-secret-key", ALLOWED_HOSTS="stefna.example.com")
    show = "from django.conf import settings as s; print(s.MEDIA_ROOT, s.OFFLINE_PROVIDER_DIR)"
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", show],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1].split() == ["/data/media", "/data/offline"]


def _smtp_options(**env: str) -> dict:
    show = "import json; from django.conf import settings as s; print(json.dumps(s.MAILERS['default']['OPTIONS']))"
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", show],
        cwd=ROOT, env=example_environment() | env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_email_reads_djangos_own_variable_names_ssl_and_timeout_included():
    """CONTRACT: email variables "as Django names them". EMAIL_USE_SSL (port 465) and
    EMAIL_TIMEOUT were not read: an SSL-only relay could not be used."""
    starttls = _smtp_options(EMAIL_HOST="smtp.example")
    assert (starttls["port"], starttls["use_tls"], starttls["use_ssl"], starttls["timeout"]) == (587, True, False, 20)

    ssl = _smtp_options(EMAIL_HOST="smtp.example", EMAIL_USE_SSL="1", EMAIL_TIMEOUT="7")
    assert (ssl["port"], ssl["use_tls"], ssl["use_ssl"], ssl["timeout"]) == (465, False, True, 7)


def readme_environment_table() -> dict[str, str]:
    """README's Configuration table: each variable its row names (`AWS_*` stands for a
    family), and that row's default cell."""
    section = (ROOT / "README.md").read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        for name in re.findall(r"`([A-Z][A-Z0-9_]*\*?)`", cells[0]):
            rows[name] = cells[2]
    return rows


def test_the_readme_table_lists_every_contract_variable_with_the_contracts_default():
    """Operators read README's table: a CONTRACT variable missing from it (STRIPE_API_BASE,
    the three Cloudinary parts) was documented only in .env.example."""
    table = readme_environment_table()
    missing = sorted(name for name in CONTRACT_DEFAULTS if name not in table)
    assert not missing, f"add these to README's environment table: {missing}"
    for name, default in CONTRACT_DEFAULTS.items():
        if default:
            assert table[name].startswith(f"`{default}`"), f"README: {name} defaults to {table[name]!r}, not {default}"


def test_the_readme_table_names_only_variables_the_code_reads():
    listed = set(parse_env_file(ROOT / ".env.example")) | commented_out(ROOT / ".env.example")
    unknown = sorted(
        name
        for name in readme_environment_table()
        if not (any(known.startswith(name[:-1]) for known in listed) if name.endswith("*") else name in listed)
    )
    assert not unknown, f"README's table names variables nothing reads: {unknown}"
