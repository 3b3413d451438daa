"""``llmops dev``: a development cluster, either kind (real pods, needs Docker) or ``--simulated``.

The simulated cluster (:mod:`llmops.dev.simulated`) is a real control plane built from source with
fake EKS-shaped nodes: for exercising the operator, scheduling and scale without Docker.
"""

from __future__ import annotations

import sys

import click


def _err(msg: str) -> None:
    click.echo(msg, err=True)


@click.group("dev")
def dev() -> None:
    """A local cluster to develop against: kind, or --simulated (no Docker)."""


@dev.command("up")
@click.option("--simulated", is_flag=True, help="Real control plane + fake GPU/Trainium nodes; no Docker.")
@click.option(
    "--operator/--no-operator",
    default=True,
    show_default=True,
    help="With --simulated: run our operator as a local process, as its ServiceAccount.",
)
def up_cmd(simulated: bool, operator: bool) -> None:
    """Create the cluster with the training operator and our CRDs; print its KUBECONFIG last.

    \b
    Examples:
      eval "$(llmops dev up --simulated | tail -1)"   # no Docker: fake EKS-shaped GPU nodes
      llmops dev up --simulated --no-operator         # run your own operator against it
      llmops dev up                                   # kind: real pods (needs Docker, kind, helm)
    """
    if simulated:
        from . import simulated as sim

        try:
            kubeconfig = sim.up(operator=operator, log=_err)
        except sim.SimulatedError as e:
            _err(f"llmops dev up --simulated: {e}")
            sys.exit(1)
        click.echo(f"export KUBECONFIG={kubeconfig}")
        return
    from . import kind

    try:
        kind.up(echo=_err)
    except kind.MissingTool as e:
        _err(str(e))
        sys.exit(1)
    click.echo(f"kubectl config use-context kind-{kind.CLUSTER}")


@dev.command("down")
@click.option("--simulated", is_flag=True, help="Stop the simulated cluster and everything it started.")
def down_cmd(simulated: bool) -> None:
    """Delete the cluster (and stop everything `dev up` started).

    \b
    Examples:
      llmops dev down --simulated
      llmops dev down
    """
    if simulated:
        from . import simulated as sim

        sim.down(log=_err)
        return
    from . import kind

    try:
        kind.down(echo=_err)
    except kind.MissingTool as e:
        _err(str(e))
        sys.exit(1)


@dev.command("load")
def load_cmd() -> None:
    """Build our images and load them into the kind cluster.

    \b
    Examples:
      llmops dev load
    """
    from . import kind

    try:
        kind.load(echo=_err)
    except kind.MissingTool as e:
        _err(str(e))
        sys.exit(1)
