"""Load the operator settings (``--config`` file, ``LLMOPS_*`` variables) with one-line errors.

A mistyped setting is named with where it came from (the file or the variable) and, when a known
setting is close, the likely spelling.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import CliError

if TYPE_CHECKING:
    from llmops_core.config import OperatorConfig


def load(path: Path | None, environ: dict[str, str] | None = None) -> OperatorConfig:
    import yaml
    from pydantic import ValidationError

    from llmops_core.config import ENV_PREFIX, OperatorConfig

    environ = dict(os.environ) if environ is None else environ
    source = str(path) if path else environ.get("LLMOPS_CONFIG") or ""
    try:
        return OperatorConfig.load(path, environ)
    except FileNotFoundError:
        raise CliError(f"operator config {source}: no such file") from None
    except (yaml.YAMLError, ValueError) as e:
        if not isinstance(e, ValidationError):
            raise CliError(f"operator config {source}: {str(e).splitlines()[0]}") from None
        messages = []
        for err in e.errors(include_url=False):
            field = str(err["loc"][0]) if err["loc"] else "(settings)"
            env = ENV_PREFIX + field.upper()
            where = env if env in environ else f"operator config {source}"
            if err["type"] == "extra_forbidden":
                close = difflib.get_close_matches(field, OperatorConfig.model_fields, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                messages.append(f"{where}: {field}: unknown setting{hint}")
            else:
                messages.append(f"{where}: {field}: {err['msg']}")
        raise CliError("; ".join(messages)) from None
