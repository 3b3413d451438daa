"""Server settings: command-line flags override `LLMOPS_*` environment variables override defaults.

The operator renders pods with environment variables; people run it with flags. Every option is
both, with the env name `LLMOPS_<OPTION_IN_UPPER_SNAKE>` (e.g. LLMOPS_MAX_BATCH_SIZE). The options
the operator sets, their types and defaults come from `llmops_core.serving.ServerContract`, so the
two sides cannot drift; the rest are for people running the server by hand.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from llmops_core.serving import ENV_PREFIX, ServerContract


class Settings(ServerContract, BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", protected_namespaces=())

    host: str = "0.0.0.0"
    max_tokens_cap: int | None = Field(None, ge=1)
    max_prompt_tokens: int | None = Field(None, ge=1)
    max_tokens_in_flight: int | None = Field(None, ge=1)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    api_keys: str | None = None  # comma-separated, from LLMOPS_API_KEYS (a Secret)
    request_timeout: float = Field(600.0, gt=0)
    cache_size: int = Field(1024, ge=0)

    @property
    def name(self) -> str:
        """The model id clients must send: --served-model-name, else the location as given."""
        return self.served_model_name or self.model

    def keys(self) -> list[str]:
        """API keys from LLMOPS_API_KEYS and --api-key-file (one per line, # comments)."""
        keys = [k.strip() for k in (self.api_keys or "").split(",")]
        if self.api_key_file is not None:
            lines = Path(self.api_key_file).read_text().splitlines()
            keys += [ln.strip() for ln in lines if not ln.strip().startswith("#")]
        return [k for k in keys if k]


_FLAGS = [f for f in Settings.model_fields if f != "api_keys"]


def parse_args(argv: list[str] | None = None) -> Settings:
    """Build Settings from flags (only those given) on top of the environment."""
    parser = argparse.ArgumentParser(
        prog="python -m llmops_serve", description="OpenAI-compatible LLM server"
    )
    for name in _FLAGS:
        flag = "--" + name.replace("_", "-")
        if Settings.model_fields[name].annotation is bool:
            parser.add_argument(flag, action="store_const", const=True, default=None)
        else:
            parser.add_argument(flag, default=None, help=f"env {ENV_PREFIX}{name.upper()}")
    args = vars(parser.parse_args(argv))
    return Settings(**{k: v for k, v in args.items() if v is not None})
