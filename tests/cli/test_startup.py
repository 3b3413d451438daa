"""`llmops --help` must not import the heavy libraries; every command documents itself with examples."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from llmops.main import cli
from tests.manifests import ROOT

PATHS = ":".join(str(ROOT / p) for p in ("cli", "operator", "training-jobs", "inference-service"))
HEAVY = ["pydantic", "yaml", "kubernetes", "boto3", "botocore", "rich", "torch", "jinja2", "llmops_core.api"]


def test_start_up_imports_nothing_heavy() -> None:
    code = f"import sys, llmops.main; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={"PYTHONPATH": PATHS, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.stdout.strip() == ""


def leaves(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            out += leaves(command, (*prefix, name))
        else:
            out.append((*prefix, name))
    return out


@pytest.mark.parametrize("path", leaves(cli), ids=" ".join)
def test_every_command_has_help_with_examples(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output and "llmops " + path[0] in result.output.split("Examples:")[1]


def test_root_help_documents_exit_codes_and_completion() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert "Exit codes: 0 success" in result.output and "_LLMOPS_COMPLETE" in result.output


def test_shell_completion_lists_commands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "llmops"], capture_output=True, text=True, check=False,
        env={"PYTHONPATH": PATHS, "PATH": "/usr/bin:/bin", "_LLMOPS_COMPLETE": "bash_complete",
             "COMP_WORDS": "llmops qu", "COMP_CWORD": "1"},
    )  # fmt: skip
    assert "quickstart" in result.stdout
