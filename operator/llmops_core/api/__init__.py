"""The llmops.dev/v1alpha1 API: pydantic models are the one source of truth for CRDs and validation.

This package imports only pydantic (and ``llmops_core.storage`` for URI parsing), so the trainer and the
server can read the same manifests without pulling in kopf or kubernetes.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from .common import API_VERSION, GROUP, VERSION
from .inference import InferenceEndpoint
from .training import TrainingJob
from .validation import Issue, SpecError, from_pydantic, validate

Resource = TrainingJob | InferenceEndpoint
KINDS: dict[str, type[TrainingJob] | type[InferenceEndpoint]] = {
    "TrainingJob": TrainingJob,
    "InferenceEndpoint": InferenceEndpoint,
}

__all__ = [
    "API_VERSION", "GROUP", "KINDS", "VERSION", "InferenceEndpoint", "Issue", "Resource", "SpecError",
    "TrainingJob", "load",
]  # fmt: skip


def load(doc: Any) -> Resource:
    """Parse and check one manifest; raise :class:`SpecError` listing every problem found."""
    if not isinstance(doc, dict):
        raise SpecError([Issue("(document)", f"expected a mapping, got {type(doc).__name__}")])
    kind, api_version = doc.get("kind"), doc.get("apiVersion")
    if api_version != API_VERSION:
        raise SpecError([Issue("apiVersion", f"must be {API_VERSION}, got {api_version!r}")])
    if kind not in KINDS:
        raise SpecError([Issue("kind", f"must be one of {sorted(KINDS)}, got {kind!r}")])
    try:
        resource = KINDS[kind].model_validate(doc)
    except ValidationError as e:
        raise SpecError(from_pydantic(e)) from None
    issues = validate(resource)
    if issues:
        raise SpecError(issues)
    return resource
