"""Operator-wide defaults: images, storage class, resources. From env (``LLMOPS_*``) or a YAML file.

A cluster admin sets these once (the Helm chart's values map onto them); a resource's own spec
always wins. The same object feeds ``llmops render`` so the CLI prints what the operator applies.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

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
