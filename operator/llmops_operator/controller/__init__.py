"""The kopf operator that keeps TrainingJobs and InferenceEndpoints true.

Start with ``training.py`` and ``inference.py``: one pass per kind, read top to bottom. Below them,
the shared machinery: ``kube`` (the one HTTP client, every call logged), ``cache`` (what the watches
last saw), ``informer`` (the children's watches), ``serial`` (one pass per object at a time),
``children`` (ensure one rendered child), ``desired`` (renders cached per spec), ``status``,
``conditions``, ``progress`` and ``events``. ``handlers`` registers every kopf handler in one place;
``run`` is what ``llmops operator run`` calls.
"""

from .handlers import REGISTRY

__all__ = ["REGISTRY"]
