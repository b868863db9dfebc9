"""`.env.example` is a real env file: comments on their own lines, unquoted values, and
every variable the code reads listed, so `docker --env-file`, compose's `env_file` and
systemd's `EnvironmentFile` read it as it is."""

from __future__ import annotations

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
    r"""(?:os\.environ\.get|os\.environ\[|os\.getenv|env_bool|env_int|env_list|_env_int|_env_float)\(?\s*["']([A-Z][A-Z0-9_]+)["']"""
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


def test_the_example_parses_as_an_env_file():
    values = parse_env_file(ROOT / ".env.example")
    assert values["DEBUG"] == "0" and values["SECRET_KEY"] == ""
    assert values["LOG_FORMAT"] == "text" and values["TRUSTED_PROXY_COUNT"] == "0"


def test_every_variable_the_code_reads_is_listed():
    listed = set(parse_env_file(ROOT / ".env.example"))
    read = {name for path in SOURCES if "tests" not in path.parts for name in READS.findall(path.read_text())}
    missing = sorted(read - listed - NOT_SETTINGS)
    assert not missing, f"add these to .env.example: {missing}"


def test_the_example_as_an_environment_starts_the_app():
    values = parse_env_file(ROOT / ".env.example")
    env = {key: value for key, value in os.environ.items() if key not in values}
    env.update(values)
    env.update(SECRET_KEY="env-example-test-secret-key", ALLOWED_HOSTS="stefna.example.com")
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
