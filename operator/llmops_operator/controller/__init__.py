"""The kopf operator: handlers on an explicit registry that keep TrainingJobs and InferenceEndpoints true.

Modules, one idea each: ``kube`` (the one HTTP client, every call logged), ``children`` (ensure a
rendered child), ``conditions`` and ``progress`` (pure status logic), ``training`` and ``inference``
(handlers), ``registry`` (the registry, settings, login) and ``run`` (what ``llmops operator run`` calls).
"""

from .registry import REGISTRY

__all__ = ["REGISTRY"]
