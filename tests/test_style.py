"""The code stays ruff-clean (the rules are in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys

from conftest import REPO_ROOT, require_tool


def test_ruff_clean() -> None:
    ruff = shutil.which("ruff") or require_tool("ruff")
    proc = subprocess.run([ruff, "check", "src", "tests", "bench", "run_convert.py"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_help_of_every_command() -> None:
    """Every subcommand answers --help (a user's first contact) without error."""
    commands = ["convert", "validate", "demo", "batch", "verify", "to-wfdb", "preview", "send"]
    for command in commands:
        proc = subprocess.run([sys.executable, "-m", "wfdb2dicom.cli", command, "--help"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and "usage:" in proc.stdout, (command, proc.stderr)
