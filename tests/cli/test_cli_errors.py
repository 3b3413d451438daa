"""Failures are one line on stderr with a documented exit code, never a traceback."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from llmops import errors
from llmops.main import cli
from tests.manifests import ROOT, endpoint

PATHS = ":".join(str(ROOT / p) for p in ("cli", "operator", "training-jobs", "inference-service"))


def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None):
    return CliRunner(env=env).invoke(cli, list(args), input=stdin)


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_typo_in_config_file_suggests_the_setting(tmp_path: Path) -> None:
    config = tmp_path / "operator.yaml"
    config.write_text("server_imag: registry.local/serve:1\n")
    result = run("render", "--config", str(config), "-", stdin=yaml.safe_dump(endpoint()))
    assert result.exit_code == errors.FAILED and result.stdout == ""
    assert one_line(result.stderr) == (
        f"Error: operator config {config}: server_imag: unknown setting (did you mean server_image?)"
    )


def test_config_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    config = tmp_path / "operator.yaml"
    config.write_text("- a\n- b\n")
    result = run("render", "--config", str(config), "-", stdin=yaml.safe_dump(endpoint()))
    assert result.exit_code == errors.FAILED
    assert "expected a mapping" in one_line(result.stderr)


def test_bad_environment_value_names_the_variable() -> None:
    result = run("render", "-", env={"LLMOPS_TRAINER_CPU": "lots"}, stdin=yaml.safe_dump(endpoint()))
    assert result.exit_code == errors.FAILED
    line = one_line(result.stderr)
    assert line.startswith("Error: LLMOPS_TRAINER_CPU: trainer_cpu:") and "'lots'" in line


def test_missing_config_named_by_environment() -> None:
    result = run("render", "-", env={"LLMOPS_CONFIG": "/nowhere.yaml"}, stdin=yaml.safe_dump(endpoint()))
    assert result.exit_code == errors.FAILED
    assert one_line(result.stderr) == "Error: operator config /nowhere.yaml: no such file"


def test_unexpected_exception_is_one_line_and_debug_shows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object) -> None:
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr("llmops.manifests_cmd.read", boom)
    result = run("validate", "x.yaml")
    assert result.exit_code == errors.FAILED
    assert one_line(result.stderr) == (
        "Error: unexpected RuntimeError: disk on fire (LLMOPS_DEBUG=1 shows the traceback)"
    )
    debug = run("validate", "x.yaml", env={"LLMOPS_DEBUG": "1"})
    assert isinstance(debug.exception, RuntimeError)


def test_known_library_errors_are_translated() -> None:
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config import ConfigException

    api = ApiException(status=403, reason="Forbidden")
    api.body = '{"kind": "Status", "message": "trainingjobs is forbidden: User \\"bob\\" cannot list"}'
    assert str(errors.translate(api).message).startswith(
        "the API server refused: 403 Forbidden: trainingjobs"
    )
    config = errors.translate(ConfigException("Invalid kube-config file. No configuration found."))
    assert config.exit_code == errors.UNREACHABLE and "KUBECONFIG" in config.message
    assert errors.translate(FileNotFoundError(2, "No such file or directory", "x.yaml")).message == (
        "x.yaml: No such file or directory"
    )
    assert errors.translate(ZeroDivisionError()) is None


def operator_run(tmp_path: Path, kubeconfig: str, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "llmops", "operator", "run", "-A"],
        capture_output=True, text=True, timeout=60, check=False,
        env={"PYTHONPATH": PATHS, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KUBECONFIG": kubeconfig, **env},
    )  # fmt: skip
    return result, time.monotonic() - start


def test_operator_run_without_kubeconfig_exits_at_once(tmp_path: Path) -> None:
    result, seconds = operator_run(tmp_path, str(tmp_path / "absent"))
    assert result.returncode == errors.UNREACHABLE and seconds < 30
    assert "no usable Kubernetes credentials" in one_line(result.stderr)


def test_operator_run_with_unreachable_server_exits(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
        })
    )  # fmt: skip
    result, _ = operator_run(tmp_path, str(kubeconfig))
    assert result.returncode == errors.UNREACHABLE
    assert "cannot reach the API server at https://127.0.0.1:9" in one_line(result.stderr)


def test_operator_run_with_a_bad_tunable_names_it(tmp_path: Path) -> None:
    result, _ = operator_run(tmp_path, str(tmp_path / "absent"), LLMOPS_OPERATOR_RESYNC_SECONDS="soon")
    assert result.returncode == errors.FAILED
    assert one_line(result.stderr) == "Error: LLMOPS_OPERATOR_RESYNC_SECONDS: expected a number, got 'soon'"
