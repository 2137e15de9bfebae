"""The setup scripts: the README names every variable the tests and scripts read, and
scripts/bootstrap.sh takes its servers from the configuration and installs only what changed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest

from tests.conftest import ADMIN_URL, _database_url

ROOT = Path(__file__).resolve().parents[2]
# os.environ.get, os.getenv, os.environ.setdefault, and os.environ[...] unless assigned to, of a
# quoted upper-case name.
PYTHON_READ = re.compile(
    r"""(?:environ\.get|getenv|environ\.setdefault)\(\s*["']([A-Z][A-Z0-9_]*)["']"""
    r"""|environ\[\s*["']([A-Z][A-Z0-9_]*)["']\s*\](?!\s*=[^=])"""
)
# In the shell scripts every upper-case name is the environment's (their own variables are
# lower-case); these are the shell's and the system's, not settings.
SHELL_READ = re.compile(r"\$\{?([A-Z][A-Z0-9_]*)")
SHELL_OWN = {"PATH", "HOME", "PWD", "USER", "TMPDIR", "BASH_SOURCE", "LINENO", "RANDOM", "SECONDS"}


def variables_read() -> dict[str, set[str]]:
    """Every environment variable read by the tests and the scripts, with where."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for match in PYTHON_READ.finditer(path.read_text()):
            found.setdefault(match.group(1) or match.group(2), set()).add(str(path.relative_to(ROOT)))
    for path in [*sorted((ROOT / "scripts").glob("*.sh")), ROOT / ".ci" / "run"]:
        for name in set(SHELL_READ.findall(path.read_text())) - SHELL_OWN:
            found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_the_readme_names_every_variable_the_tests_read():
    read = variables_read()
    # The scan finds what is known to be read, in Python and in shell alike.
    assert {"TEST_DATABASE_ADMIN_URL", "TEST_REDIS_URL", "TEST_WORKERS", "VENV", "PYTHON"} <= read.keys()
    assert "JOBS_MIN_BACKOFF_MS" not in read  # conftest sets it; nothing reads it from the tests
    tests, configuration = readme_section("Tests"), readme_section("Configuration")
    # A test-only variable is named in "Tests"; the system's own settings in "Configuration".
    unnamed = {
        name: sorted(where)
        for name, where in read.items()
        if f"`{name}`" not in tests and f"`{name}`" not in configuration
    }
    assert not unnamed, f"read but not named in the README's Tests section: {unnamed}"
    for name in ("TEST_DATABASE_ADMIN_URL", "TEST_REDIS_URL"):
        assert f"`{name}`" in tests


@pytest.fixture
def venv(tmp_path):
    """A virtualenv for bootstrap.sh whose pip records its calls instead of installing anything;
    its python and jobctl are otherwise this one's."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    calls = tmp_path / "pip-calls"
    calls.touch()
    (bin_dir / "python").write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = -m ] && [ "$2" = pip ]; then echo "$*" >>"{calls}"; exit 0; fi\n'
        f'exec "{sys.executable}" "$@"\n'
    )
    (bin_dir / "jobctl").write_text(f'#!/bin/sh\nexec "{Path(sys.executable).with_name("jobctl")}" "$@"\n')
    for script in bin_dir.iterdir():
        script.chmod(0o755)
    return FakeVenv(tmp_path / "venv", calls)


@dataclass(frozen=True)
class FakeVenv:
    path: Path
    calls: Path

    def pip_calls(self) -> list[str]:
        return self.calls.read_text().splitlines()

    @property
    def stamp(self) -> Path:
        return self.path / ".bootstrap-stamp"


def bootstrap(venv: FakeVenv, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ROOT / "scripts" / "bootstrap.sh"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "VENV": str(venv.path), **(env or {})},
    )


def test_bootstrap_installs_once_then_has_nothing_to_do(venv):
    first = bootstrap(venv)
    assert first.returncode == 0, first.stderr
    assert venv.pip_calls() == ["-m pip install --quiet -e .[test]"]  # and never an upgrade of pip
    assert first.stdout.startswith(f"bootstrap: installing the project and its test tools into {venv.path}\n")

    second = bootstrap(venv)
    assert second.returncode == 0, second.stderr
    assert venv.pip_calls() == ["-m pip install --quiet -e .[test]"]
    assert (second.stdout, second.stderr) == ("the schema is up to date\n", "")

    venv.stamp.write_text("what an older setup.cfg installed\n")
    third = bootstrap(venv)
    assert third.returncode == 0, third.stderr
    assert len(venv.pip_calls()) == 2


def test_bootstrap_migrates_the_configured_database(venv, settings):
    bootstrap(venv)  # installed: the stamp matches from now on
    name = f"{settings.admin_database_url.rsplit('/', 1)[1]}_bootstrap_{uuid.uuid4().hex[:6]}"
    try:
        done = bootstrap(
            venv,
            env={"ADMIN_DATABASE_URL": _database_url(name), "DATABASE_URL": _database_url(name, user="jobs_worker")},
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("applied: 0001_tenants.sql, ")
        assert len(venv.pip_calls()) == 1
    finally:
        admin = psycopg2.connect(ADMIN_URL)
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.mark.parametrize(
    ("variable", "url", "where"),
    [
        ("TEST_REDIS_URL", "redis://:secret@192.0.2.1:6379/0", "192.0.2.1:6379"),
        ("TEST_DATABASE_ADMIN_URL", "postgresql://postgres:secret@192.0.2.1:6543/postgres", "192.0.2.1:6543"),
    ],
)
def test_bootstrap_for_the_tests_uses_their_servers(venv, variable, url, where):
    bootstrap(venv)
    # 192.0.2.1 is an address for documentation: not this machine, and nothing answers there.
    refused = bootstrap(venv, "--tests", env={variable: url})
    assert refused.returncode == 1
    assert refused.stderr == (
        f"bootstrap: nothing answers at {where} ({variable}), which is not this machine:"
        f" start the server there, or set {variable}\n"
    )
    assert "secret" not in refused.stdout + refused.stderr
    assert len(venv.pip_calls()) == 1


def test_bootstrap_for_the_tests_migrates_nothing(venv):
    bootstrap(venv)
    ready = bootstrap(venv, "--tests", env={"ADMIN_DATABASE_URL": "postgresql://postgres@192.0.2.1:6543/jobs"})
    assert (ready.returncode, ready.stdout, ready.stderr) == (0, "", "")
