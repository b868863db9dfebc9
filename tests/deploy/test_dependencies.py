"""Every third-party package the code imports is declared in requirements*.txt (the
human lists), and the hashed locks agree with those lists (`.ci/check_lock.py`)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE = ["stefna", "generation", "credits", "presets", "tests", "bench"]
OURS = {"stefna", "generation", "credits", "presets", "tests", "bench", "conftest"}


def declared(path: Path) -> set[str]:
    names: set[str] = set()
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            names |= declared(path.parent / line.split(None, 1)[1])
        elif line and not line.startswith("-"):
            names.add(re.sub(r"[-_.]+", "-", re.split(r"[\[=<>~ ;]", line, maxsplit=1)[0]).lower())
    return names


def imported_modules() -> set[str]:
    modules: set[str] = set()
    files = [path for folder in CODE for path in (ROOT / folder).rglob("*.py")]
    files += [ROOT / "manage.py", ROOT / "conftest.py", ROOT / "gunicorn.conf.py"]
    for path in files:
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules.add(node.module.split(".")[0])
    return {name for name in modules if name not in sys.stdlib_module_names and name not in OURS}


def test_every_imported_package_is_declared():
    distributions = importlib.metadata.packages_distributions()
    wanted = declared(ROOT / "requirements-dev.txt")
    undeclared = {}
    for module in sorted(imported_modules()):
        names = {re.sub(r"[-_.]+", "-", name).lower() for name in distributions.get(module, [module])}
        if not names & wanted:
            undeclared[module] = sorted(names)
    assert not undeclared, f"imported but not in requirements*.txt: {undeclared}"


def test_the_hashed_locks_agree_with_the_lists():
    result = subprocess.run([sys.executable, str(ROOT / ".ci/check_lock.py")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_lock_check_fails_loudly_on_a_mismatch(tmp_path):
    for name in ("requirements.txt", "requirements-dev.txt", "requirements.lock", "requirements-dev.lock"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    (tmp_path / ".ci").mkdir()
    (tmp_path / ".ci/check_lock.py").write_text((ROOT / ".ci/check_lock.py").read_text())
    with (tmp_path / "requirements.txt").open("a") as human:
        human.write("django-new-thing==1.0\n")
    text = (tmp_path / "requirements.lock").read_text()
    (tmp_path / "requirements.lock").write_text(re.sub(r"(?m)^django==[^ ]+", "django==0.0.1", text))
    result = subprocess.run([sys.executable, str(tmp_path / ".ci/check_lock.py")], capture_output=True, text=True)
    assert result.returncode == 1
    assert "django-new-thing" in result.stderr and "django==" in result.stderr.lower() and "make lock" in result.stderr


def test_every_locked_package_carries_hashes():
    for lock in ("requirements.lock", "requirements-dev.lock"):
        lines = (ROOT / lock).read_text().splitlines()
        pinned = [number for number, line in enumerate(lines) if re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*==", line)]
        assert pinned, lock
        for number in pinned:
            assert lines[number + 1].strip().startswith("--hash=sha256:"), f"{lock}: {lines[number]} has no hash"
