"""The one ``kopf.OperatorRegistry``, the login that kopf shares with our client, and kopf's settings."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from llmops_core.api import GROUP

from . import kube
from .settings import TUNABLES

REGISTRY = kopf.OperatorRegistry()
PREFIX = "llmops.dev"


@kopf.on.login(id="login", registry=REGISTRY)
def login(**_: Any) -> kopf.ConnectionInfo:
    """kopf connects with what our own client uses (in-cluster or the kubeconfig), loaded afresh:
    kopf calls this again on 401, when a token has rotated or expired."""
    c = kube.refresh()
    return kopf.ConnectionInfo(
        server=c.server,
        token=c.token,
        ca_path=c.ca_path,
        certificate_path=c.cert_path,
        private_key_path=c.key_path,
        insecure=c.insecure,
    )


class ParentsDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff base, built for our parents only.

    kopf builds a diff base for every event of every watched resource, starting with a deep copy of
    the whole body, though only the parents have change handlers: the children's events (a PyTorchJob
    or Deployment carries a whole pod template) were the largest single cost of the operator's CPU.
    For them the diff base is empty; nothing reads it.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        if str(body.get("apiVersion", "")).startswith(f"{GROUP}/"):
            return super().build(body=body, extra_fields=extra_fields)
        return kopf.BodyEssence()


def configure(settings: kopf.OperatorSettings) -> None:
    """Our annotation prefix for kopf's state, events on, long watches, short retries."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = ParentsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{PREFIX}/finalizer"  # declared, never added: no deletion handlers
    settings.posting.enabled = True
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.inactivity_timeout = TUNABLES.watch_inactivity_seconds
    settings.queueing.error_delays = (1, 2, 5, 10)
    settings.peering.name = "llmops-operator"
    settings.peering.mandatory = False


@kopf.on.startup(id="settings", registry=REGISTRY)
def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    configure(settings)


# The handler modules register themselves on REGISTRY when imported.
from . import inference, resync, training, watch  # noqa: E402

__all__ = ["REGISTRY", "inference", "resync", "training", "watch"]
