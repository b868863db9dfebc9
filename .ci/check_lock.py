#!/usr/bin/env python
"""Fail loudly when requirements*.txt and their hashed locks disagree.

requirements.txt and requirements-dev.txt are the human lists; requirements.lock and
requirements-dev.lock are what `make install` and the Dockerfile install (with
--require-hashes). Every pin in a list must appear, at the same version, in its lock,
and every package in a list must be in the lock at all; otherwise someone edited a
list without running `make lock`, and installing would quietly give them something
else. Standard library only: it runs before anything is installed.

    python .ci/check_lock.py        exit 0 when they agree, 1 with the differences
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAIRS = {"requirements.txt": "requirements.lock", "requirements-dev.txt": "requirements-dev.lock"}
REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*(?:==\s*([^\s;#]+))?")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wanted(path: Path) -> dict[str, str | None]:
    """name → pinned version (None when unpinned), following -r includes."""
    found: dict[str, str | None] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith(("-r ", "--requirement ")):
            found.update(wanted(path.parent / line.split(None, 1)[1]))
            continue
        if line.startswith("-"):
            continue
        match = REQUIREMENT.match(line)
        if match:
            found[normalize(match.group(1))] = match.group(2)
    return found


def locked(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
        if match:
            found[normalize(match.group(1))] = match.group(2)
    return found


def main() -> int:
    problems = []
    for human, lock in PAIRS.items():
        lock_path = ROOT / lock
        if not lock_path.exists():
            problems.append(f"{lock} is missing: run `make lock`")
            continue
        pins = locked(lock_path)
        for name, version in wanted(ROOT / human).items():
            if name not in pins:
                problems.append(f"{human} lists {name}, which {lock} does not have")
            elif version is not None and pins[name] != version:
                problems.append(f"{human} pins {name}=={version}, {lock} has {pins[name]}")
    if problems:
        print("The hashed locks disagree with the requirements files:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        print("Run `make lock` to regenerate them (and commit both).", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
