"""Exit codes and the one-line error every failure becomes (a traceback only with ``LLMOPS_DEBUG=1``).

Exceptions from libraries the CLI loads lazily (kubernetes, botocore, pydantic) are recognised by
class name and module, so this module imports none of them.
"""

from __future__ import annotations

import os
from typing import Any

import click

OK = 0
FAILED = 1  # invalid input, an API error, a resource that ended Failed
USAGE = 2  # a bad flag or argument (click's own code)
TIMEOUT = 3  # --wait/--timeout ran out before the resource settled
UNREACHABLE = 4  # no credentials for the cluster or AWS, or the endpoint does not answer
INTERRUPTED = 130  # Ctrl-C

EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 failure (invalid input, API error, resource Failed); 2 usage error; "
    "3 timed out waiting; 4 cluster or AWS unreachable or no credentials; 130 interrupted."
)


class CliError(click.ClickException):
    """A one-line error with its own exit code."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.exit_code = code


def _named(exc: BaseException, module_prefix: str, *names: str) -> bool:
    return any(
        cls.__module__.startswith(module_prefix) and cls.__name__ in names for cls in type(exc).__mro__
    )


def _api_message(exc: Any) -> str:
    """The ``message`` of a Kubernetes Status body, else the reason."""
    import json

    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return f"{exc.status} {exc.reason}: {message}" if message else f"{exc.status} {exc.reason}"


def translate(exc: BaseException) -> CliError | None:
    """The one-line error for a known library failure; None for a bug."""
    if _named(exc, "kubernetes", "ConfigException"):
        return CliError(
            f"no usable Kubernetes credentials: {str(exc).splitlines()[0]} "
            "(set KUBECONFIG or --kubeconfig, or pick a context with --context)",
            UNREACHABLE,
        )
    if _named(exc, "kubernetes", "ApiException"):
        return CliError(f"the API server refused: {_api_message(exc)}")
    if _named(exc, "urllib3", "MaxRetryError", "NewConnectionError", "ProtocolError"):
        reason = getattr(exc, "reason", None) or exc
        return CliError(f"cannot reach the API server: {str(reason).splitlines()[0]}", UNREACHABLE)
    if _named(exc, "botocore", "NoCredentialsError", "NoRegionError", "EndpointConnectionError"):
        return CliError(f"AWS: {exc}", UNREACHABLE)
    if _named(exc, "botocore", "ClientError", "BotoCoreError"):
        return CliError(f"AWS: {str(exc).splitlines()[0]}")
    if _named(exc, "pydantic", "ValidationError") or _named(exc, "pydantic_core", "ValidationError"):
        first = exc.errors()[0]  # type: ignore[attr-defined]
        where = ".".join(map(str, first["loc"]))
        return CliError(f"{where}: {first['msg']}")
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return CliError(f"{where}{exc.strerror or exc}")
    return None


def guard(invoke: Any) -> Any:
    """Run a click invocation, turning every exception into one line on stderr and an exit code."""
    try:
        return invoke()
    except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
        raise
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        raise click.exceptions.Exit(INTERRUPTED) from None
    except Exception as exc:
        if os.environ.get("LLMOPS_DEBUG"):
            raise
        known = translate(exc)
        if known is not None:
            raise known from None
        text = str(exc).splitlines()[0] if str(exc) else ""
        raise CliError(
            f"unexpected {type(exc).__name__}: {text} (LLMOPS_DEBUG=1 shows the traceback)"
        ) from None
