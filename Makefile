# Stefna. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
# Development commands default to DEBUG=1 (a dev-only secret key, localhost hosts);
# a real deployment sets DEBUG=0 and SECRET_KEY in its environment.
DEV := DEBUG=$${DEBUG:-1}
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Django 6 needs Python 3.12+. Prefer pyenv's 3.13 (.python-version), then any 3.13/3.12 on PATH.
PYTHON_CANDIDATES := $(HOME)/.pyenv/versions/$(shell cat .python-version 2>/dev/null)/bin/python python3.13 python3.12 python3
FIND_PYTHON = for c in $(PYTHON_CANDIDATES); do \
	  if command -v $$c >/dev/null 2>&1 && $$c -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then command -v $$c; exit 0; fi; \
	done; exit 1

# i18n: the .mo catalogues are committed and rebuilt from the .po by `make messages`.
.PHONY: messages gettext makemessages
.PHONY: help install chromium run worker migrate test screenshots lint fmt typecheck bench clean lock upgrade smoke social-preview

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-10s %s\n", $$1, $$2}'

$(PY):
	@PYTHON=$$($(FIND_PYTHON)) || { echo "Stefna needs Python 3.12 or newer (3.13 preferred) and none was found." >&2; \
	  echo "Install one (e.g. 'pyenv install 3.13.0') and run make again." >&2; exit 1; }; \
	echo "Creating $(VENV) with $$PYTHON ($$($$PYTHON --version))"; \
	$$PYTHON -m venv $(VENV)

# Installs from the hashed lock, never from the human lists: a package whose files differ
# from the recorded hashes is refused. The check fails loudly if a list was edited without
# `make lock`.
$(VENV)/.installed: requirements.txt requirements-dev.txt requirements.lock requirements-dev.lock | $(PY)
	@$(PY) .ci/check_lock.py
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet --require-hashes -r requirements-dev.lock
	@touch $@

install: $(VENV)/.installed ## Create .venv and install the pinned requirements

migrate: install messages ## Apply migrations (the presets are seeded by a data migration)
	$(DEV) $(PY) manage.py migrate --no-input

run: migrate ## Serve the app at http://127.0.0.1:8000 with a task worker (Ctrl-C stops both)
	@echo "Stefna: http://127.0.0.1:8000  (worker running alongside; Ctrl-C stops both)"
	@trap 'kill 0' INT TERM EXIT; \
	$(DEV) $(PY) manage.py db_worker & \
	$(DEV) $(PY) manage.py runserver 127.0.0.1:8000 & \
	wait

worker: migrate ## Run only the background task worker
	$(DEV) $(PY) manage.py db_worker

# The browser tests drive Debian's Chromium (Playwright cannot download browsers here): its
# headless shell, the build Playwright itself runs headless. On 7 Dec the browser tests took
# 127 s with it against 225 s with the full browser, whose GPU and browser processes cost
# Chromium 2.3 times the CPU. tests/browser/conftest.py falls back to the full browser.
CHROMIUM ?= /usr/bin/chromium-headless-shell
chromium:
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing Debian's chromium-headless-shell for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium-headless-shell >/dev/null; \
	  else \
	    echo "Browser tests need Chromium at $(CHROMIUM): run 'sudo apt-get install chromium-headless-shell' (they use /usr/bin/chromium if that is all there is, and are skipped, and reported, without either)."; \
	  fi; \
	fi

# Three processes (pytest-xdist) on a 2-core machine: the suite waits on Chromium, worker
# and server processes and sockets for much of its time (at -n 2 it kept 0.8 of the two
# cores busy). Measured on 7 Dec: SQLite 270 s at -n 2, 181 s at -n 3 and 4; PostgreSQL
# 233 s at -n 2, 216 s at -n 3, 261 s at -n 4 (the server's own CPU is then the limit).
# PYTEST_ARGS= (empty) runs it in one process.
PYTEST_ARGS ?= -n 3
# Bytecode is cached even where the environment says not to (PYTHONDONTWRITEBYTECODE=1 on
# some machines): each xdist worker rewrites the test modules' asserts and each server or
# worker a test starts compiles the project, and without the cache they did it every time.
# Measured on 7 Dec (a slow machine): collection 18.7 → 7.6 s of CPU a process, the SQLite
# suite 395 → 359 s.
WITH_BYTECODE_CACHE := env -u PYTHONDONTWRITEBYTECODE
test: install chromium messages ## Run the whole test suite (SQLite, or DATABASE_URL when set)
	$(WITH_BYTECODE_CACHE) $(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

screenshots: install chromium ## Refresh docs/screenshots/ from the browser tests
	STEFNA_SCREENSHOTS=docs $(PY) -m pytest -p no:cacheprovider tests/browser

# compilemessages needs GNU gettext's msgfmt; install Debian's when missing, as for Chromium.
gettext:
	@if ! command -v msgfmt >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing GNU gettext for the translation catalogues"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gettext >/dev/null; \
	  else \
	    echo "Translations need GNU gettext: run 'sudo apt-get install gettext' (the committed .mo files are used meanwhile)."; \
	  fi; \
	fi

social-preview: install ## Redraw static/img/social-preview.png (the home page's and feed's og:image); commit it
	$(PY) docs/social_preview.py

messages: install gettext ## Compile the translation catalogues (locale/*/LC_MESSAGES/django.mo)
	@if command -v msgfmt >/dev/null 2>&1; then SECRET_KEY=messages $(PY) manage.py compilemessages --ignore=.venv --ignore=node_modules -v0; fi

makemessages: install gettext ## Collect new strings into locale/id/LC_MESSAGES/django.po
	SECRET_KEY=messages $(PY) manage.py makemessages -l id --no-obsolete --ignore=.venv --ignore=node_modules --ignore=staticfiles --ignore=media --ignore=bench --ignore=tests --ignore="*/tests/*" --add-location=file
	SECRET_KEY=messages $(PY) manage.py makemessages -l id -d djangojs --no-obsolete --ignore=.venv --ignore=node_modules --ignore=staticfiles --ignore=static/js/htmx.min.js --ignore=tests --add-location=file

lint: install ## ruff check, ruff format --check, missing-migrations check, hadolint, lock check, mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	SECRET_KEY=lint $(PY) manage.py makemigrations --check --dry-run
	$(VENV)/bin/hadolint Dockerfile
	$(PY) .ci/check_lock.py
	SECRET_KEY=typecheck $(VENV)/bin/mypy .

fmt: install ## Format and auto-fix with ruff
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: install ## mypy with django-stubs
	SECRET_KEY=typecheck $(VENV)/bin/mypy .

bench: install ## Run the benchmarks under bench/ (needs the local PostgreSQL)
	$(PY) bench/run_all.py

clean: ## Remove the virtualenv, local database and media
	rm -rf $(VENV) db.sqlite3 .test-db.sqlite3* media staticfiles

# --- Dependencies: requirements*.txt are the human lists, *.lock what gets installed ------
# Resolved for every platform (a Mac, the linux/arm64 image) and Python 3.12+, with hashes.
UV_COMPILE = $(VENV)/bin/uv pip compile --quiet --universal --python-version 3.12 --generate-hashes \
	--custom-compile-command "make lock"
$(VENV)/bin/uv: | $(PY)
	$(PIP) install --quiet "$$(grep -E '^uv==' requirements-dev.txt)"

lock: $(VENV)/bin/uv ## Regenerate the hashed locks from requirements*.txt (keeps current pins)
	$(UV_COMPILE) requirements.txt -o requirements.lock
	$(UV_COMPILE) requirements-dev.txt -o requirements-dev.lock
	@$(PY) .ci/check_lock.py && echo "requirements.lock and requirements-dev.lock are up to date with the lists"

upgrade: $(VENV)/bin/uv ## Move unpinned and indirect dependencies to their newest releases, then re-lock
	$(UV_COMPILE) --upgrade requirements.txt -o requirements.lock
	$(UV_COMPILE) --upgrade requirements-dev.txt -o requirements-dev.lock
	@echo "Locks upgraded. Newer direct pins: bump them in requirements*.txt, then 'make lock'."
	@$(VENV)/bin/uv pip list --outdated 2>/dev/null || true

# --- The production topology, end to end (tests/smoke/run.py) -----------------------------
# Scratch services: the database is dropped and made again, the Redis database flushed.
SMOKE_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/stefna_smoke
SMOKE_REDIS_URL ?= redis://127.0.0.1:6379/15
smoke: install ## gunicorn x2 + db_worker x2 on PostgreSQL and Redis, fakes of fal and Cloudinary, SIGTERM at the end
	$(WITH_BYTECODE_CACHE) DATABASE_URL="$(SMOKE_DATABASE_URL)" REDIS_URL="$(SMOKE_REDIS_URL)" $(PY) tests/smoke/run.py
