"""The one renderer: a validated resource in, Kubernetes objects out, in creation order.

The operator, ``llmops render`` and the tests all call :func:`render`, so what the CLI prints is
exactly what the operator applies.
"""

from __future__ import annotations

from typing import Any

from llmops_core.api import InferenceEndpoint, Resource, SpecError, TrainingJob
from llmops_core.config import OperatorConfig

from .inference import UnresolvedModel, render_inference_endpoint
from .training import render_training_job

__all__ = ["UnresolvedModel", "output_location", "render"]


def render(
    resource: Resource, config: OperatorConfig | None = None, resolved_model: str | None = None
) -> list[dict[str, Any]]:
    """Children of ``resource``. ``resolved_model`` is the output of a ``fromTrainingJob`` source.

    Raises :class:`SpecError` naming the field when the operator config's allow-lists refuse the
    resource's image or ServiceAccount: every way to objects (operator, ``llmops render``) comes here.
    """
    config = config or OperatorConfig()
    refused = config.refusals(resource)
    if refused:
        raise SpecError(refused)
    if isinstance(resource, TrainingJob):
        return render_training_job(resource, config)
    if isinstance(resource, InferenceEndpoint):
        return render_inference_endpoint(resource, config, resolved_model)
    raise TypeError(f"cannot render {type(resource).__name__}")


def output_location(tj: TrainingJob) -> str:
    """Where a TrainingJob's final model lands; what a ``fromTrainingJob`` endpoint serves."""
    return tj.spec.output.location
