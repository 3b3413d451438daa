"""The ``llmops`` command: each subcommand lives in its own module; this file only registers them.

Every module imported here imports only click and the standard library at start-up (pydantic,
kubernetes, torch, boto3 and rich load inside the commands that use them), so ``llmops --help``
starts in a few tens of milliseconds; ``tests/cli/test_startup.py`` keeps it that way.
"""

from __future__ import annotations

from typing import Any

import click

from . import __version__
from .data_cmd import data
from .delete_cmd import delete
from .deploy import deploy
from .dev import dev
from .eks import eks
from .errors import EXIT_CODES_HELP, guard
from .estimate_cmd import estimate
from .local import local
from .logs_cmd import logs
from .manifests_cmd import crds, render, validate
from .operator_cmd import operator as operator_cmd
from .quickstart import quickstart
from .status_cmd import status


class Cli(click.Group):
    """The root group: any failure below it is one line on stderr, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        return guard(lambda: super(Cli, self).invoke(ctx))


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="llmops")
def cli() -> None:
    """Run LLM training and inference on Kubernetes and Amazon EKS.

    Shell completion: eval "$(_LLMOPS_COMPLETE=bash_source llmops)" (zsh_source, fish_source).
    """


cli.add_command(deploy)
cli.add_command(status)
cli.add_command(logs)
cli.add_command(delete)
cli.add_command(validate)
cli.add_command(render)
cli.add_command(estimate)
cli.add_command(crds)
cli.add_command(quickstart)
cli.add_command(local)
cli.add_command(eks)
cli.add_command(data)
cli.add_command(operator_cmd)
cli.add_command(dev)

if __name__ == "__main__":
    cli()
