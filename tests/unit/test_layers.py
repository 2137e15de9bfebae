"""The layers point down (web -> jobs -> actors -> middleware -> db), as setup.cfg's import-linter
contracts say; an import that breaks one fails the suite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def lint_imports(config: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", LINT, "--no-cache", str(config)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", **env},
    )


def test_every_layer_contract_is_kept():
    checked = lint_imports(ROOT / "setup.cfg", ROOT, PYTHONPATH=str(ROOT))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "3 kept, 0 broken" in checked.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    # The same contracts over a copy of the packages in which db/transitions.py imports
    # jobs.errors, as it once did: the check must catch it.
    for package in ("web", "jobs", "actors", "middleware", "db"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    with open(tmp_path / "db" / "transitions.py", "a") as module:
        module.write("\nfrom jobs import errors  # noqa: E402\n")
    config = tmp_path / "setup.cfg"
    config.write_text((ROOT / "setup.cfg").read_text())
    checked = lint_imports(config, tmp_path, PYTHONPATH=str(tmp_path))
    assert checked.returncode != 0, checked.stdout + checked.stderr
    assert "db.transitions -> jobs.errors" in checked.stdout
