"""Operator-wide defaults: images, storage class, resources. From env (``LLMOPS_*``) or a YAML file.

A cluster admin sets these once (the Helm chart's values map onto them); a resource's own spec
always wins. The same object feeds ``llmops render`` so the CLI prints what the operator applies.
"""

from __future__ import annotations

import os
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .api import Issue, Resource
from .api.common import Quantity

ENV_PREFIX = "LLMOPS_"


class OperatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    trainer_image: str = "ghcr.io/llmops-dev/llmops-train:0.1.0"
    server_image: str = "ghcr.io/llmops-dev/llmops-serve:0.1.0"
    vllm_image: str = "vllm/vllm-openai:v0.10.2"
    image_pull_policy: str = "IfNotPresent"
    storage_class: str | None = Field(
        None, description="For checkpoint claims that name none; None = cluster default."
    )
    trainer_cpu: Quantity = "2"
    trainer_memory: Quantity = "8Gi"
    server_cpu: Quantity = "1"
    server_memory: Quantity = "4Gi"
    fetch_cpu: Quantity = Field("1", description="CPU request of the init container that downloads a model.")
    fetch_memory: Quantity = Field("2Gi", description="Memory request and limit of that init container.")
    model_volume_size: Quantity = Field(
        "100Gi",
        description="Size limit of the /model volume a model is downloaded into, unless the spec sets one.",
    )
    pvc_root: str = "/mnt/pvc"
    allowed_images: list[str] = Field(
        default_factory=list,
        description="Glob patterns (e.g. registry.example.com/ml/*) a resource's spec.image must match; "
        "empty allows any image. The defaults above are the admin's own and always allowed.",
    )
    allowed_service_accounts: list[str] = Field(
        default_factory=list,
        description="Glob patterns a resource's spec.serviceAccountName must match; empty allows any.",
    )
    fit_check: Literal["warn", "refuse", "off"] = Field(
        "warn",
        description="A resource whose memory estimate exceeds its accelerators: warn (condition "
        "FitsAccelerators=False, an Event), refuse (nothing is created), or off.",
    )

    @field_validator("allowed_images", "allowed_service_accounts", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        """From an environment variable: a comma-separated list."""
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    def refusals(self, resource: Resource) -> list[Issue]:
        """What this cluster's policy forbids in ``resource``: whoever may create a TrainingJob or an
        InferenceEndpoint otherwise runs any image under any ServiceAccount of the namespace."""
        issues = []
        image, account = resource.spec.image, resource.spec.service_account_name
        if image is not None and self.allowed_images and not _matches(image, self.allowed_images):
            issues.append(
                Issue(
                    "spec.image", f"{image!r} is not allowed here; allowed: {', '.join(self.allowed_images)}"
                )
            )
        if (
            account is not None
            and self.allowed_service_accounts
            and not _matches(account, self.allowed_service_accounts)
        ):
            issues.append(
                Issue(
                    "spec.serviceAccountName",
                    f"{account!r} is not allowed here; allowed: {', '.join(self.allowed_service_accounts)}",
                )
            )
        return issues

    @classmethod
    def load(cls, path: Path | None = None, environ: dict[str, str] | None = None) -> OperatorConfig:
        """File values first, then ``LLMOPS_<FIELD>`` environment variables on top."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        path = path or (Path(environ["LLMOPS_CONFIG"]) if environ.get("LLMOPS_CONFIG") else None)
        if path is not None:
            loaded = yaml.safe_load(path.read_text()) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{path}: expected a mapping of settings")
            values.update(loaded)
        for name in cls.model_fields:
            env = environ.get(ENV_PREFIX + name.upper())
            if env is not None:
                values[name] = env
        return cls.model_validate(values)


def _matches(value: str, patterns: list[str]) -> bool:
    return any(fnmatchcase(value, p) for p in patterns)
