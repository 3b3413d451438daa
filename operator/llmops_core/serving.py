"""The operator → bundled-server contract, defined once: the options the operator sets in a pod.

The renderer writes these as ``LLMOPS_<NAME>`` environment variables (:func:`to_env`); the server's
``Settings`` extends :class:`ServerContract` and reads the same names, so a renamed or retyped option
breaks both sides at once (a test renders a pod and parses its env with the server's ``Settings``).
The API's ``spec.server`` defaults come from here too.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ENV_PREFIX = "LLMOPS_"
PORT = 8000
Dtype = Literal["auto", "float32", "bfloat16", "float16"]
Quantize = Literal["none", "int8"]


class ServerContract(BaseModel):
    """What the operator may tell the bundled server; each field is ``LLMOPS_<FIELD_UPPER>``."""

    model_config = ConfigDict(protected_namespaces=())

    model: str = Field(description="Model directory or location (s3://, pvc://claim/path, a path).")
    served_model_name: str | None = None
    port: int = Field(PORT, ge=1, le=65535)
    max_batch_size: int = Field(16, ge=1)
    max_queue: int = Field(256, ge=0)
    max_model_len: int | None = Field(None, ge=2)
    quantize: Quantize = "none"
    dtype: Dtype = "auto"
    api_key_file: str | None = None
    drain_timeout: float = Field(30.0, ge=0)
    pvc_root: str | None = None
    cache_dir: str | None = None
    log_json: bool = False


def default(field: str) -> object:
    """A contract field's default, for the API models that expose the same option."""
    return ServerContract.model_fields[field].default


def to_env(options: ServerContract) -> dict[str, str]:
    """The environment variables a pod needs for ``options``; unset options are left out."""
    out: dict[str, str] = {}
    for name, value in options.model_dump(exclude_none=True).items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, float):
            value = f"{value:g}"  # 30.0 -> "30"
        out[ENV_PREFIX + name.upper()] = str(value)
    return out
