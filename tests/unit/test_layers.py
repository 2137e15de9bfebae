"""The layers point down (web -> jobs -> actors -> middleware -> db), as setup.cfg's import-linter
contracts say; an import that breaks one fails the suite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.parametrize(
    ("module", "imported"),
    [
        # db/transitions.py once imported jobs.errors.
        ("db/transitions.py", "jobs.errors"),
        ("jobs/reads.py", "web.problems"),
        # The command line may register web.commands' subcommands, and nothing else of web.
        ("jobs/cli/reading.py", "web.app"),
    ],
)
def test_an_upward_import_breaks_the_contract(tmp_path, module, imported):
    # The same contracts over a copy of the packages in which `module` imports `imported`.
    for package in ("web", "jobs", "actors", "middleware", "db"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    with open(tmp_path / module, "a") as source:
        source.write(f"\nimport {imported}  # noqa: E402\n")
    config = tmp_path / "setup.cfg"
    config.write_text((ROOT / "setup.cfg").read_text())
    checked = lint_imports(config, tmp_path, PYTHONPATH=str(tmp_path))
    assert checked.returncode != 0, checked.stdout + checked.stderr
    importer = module.removesuffix(".py").replace("/", ".")
    assert f"{importer} -> {imported}" in checked.stdout
