"""Where the operator's credentials come from (in a pod, or a kubeconfig), read without the kubernetes
client; and the quantity parser that replaced that client's."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from llmops_operator.controller import children, connection

ROOT = Path(__file__).resolve().parents[2]


def kubeconfig(path: Path, user: dict, cluster: dict | None = None, name: str = "c") -> Path:
    path.write_text(
        yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": name,
            "clusters": [{"name": name, "cluster": cluster or {"server": "https://10.0.0.1:6443"}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "users": [{"name": name, "user": user}],
        })
    )  # fmt: skip
    return path


@pytest.fixture
def no_pod(monkeypatch, tmp_path):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setattr(connection, "SA_DIR", tmp_path / "no-sa")


def test_in_a_pod_the_service_account_is_used_and_its_token_read_again_on_each_load(monkeypatch, tmp_path):
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("jwt-1\n")
    monkeypatch.setattr(connection, "SA_DIR", sa)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    c = connection.from_environment()
    assert (c.server, c.token, c.ca_path) == ("https://10.96.0.1:443", "jwt-1", str(sa / "ca.crt"))
    (sa / "token").write_text("jwt-2")  # the kubelet rotated it
    assert connection.from_environment().token == "jwt-2"
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    assert connection.from_environment().server == "https://[fd00::1]:443"


def test_kubeconfig_files_merge_first_value_wins_and_paths_are_relative_to_their_file(
    monkeypatch, tmp_path, no_pod
):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "token").write_text("from-file\n")
    first = kubeconfig(
        tmp_path / "a" / "config",
        {"tokenFile": "token", "client-certificate": "c.crt", "client-key": "c.key"},
        {"server": "https://first:6443", "certificate-authority": "ca.crt", "insecure-skip-tls-verify": True},
    )
    second = kubeconfig(tmp_path / "second", {"token": "ignored"}, {"server": "https://second:6443"})
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(first), str(tmp_path / "missing"), str(second)]))
    c = connection.from_environment()
    assert c == connection.Connection(
        server="https://first:6443",
        token="from-file",
        ca_path=str(tmp_path / "a" / "ca.crt"),
        cert_path=str(tmp_path / "a" / "c.crt"),
        key_path=str(tmp_path / "a" / "c.key"),
        insecure=True,
    )


def test_inline_certificates_become_private_files_written_once(monkeypatch, tmp_path, no_pod):
    pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    b64 = base64.b64encode(pem).decode()
    config = kubeconfig(
        tmp_path / "config",
        {"client-certificate-data": b64, "client-key-data": base64.b64encode(b"key").decode()},
        {"server": "https://s:6443", "certificate-authority-data": b64},
    )
    monkeypatch.setenv("KUBECONFIG", str(config))
    c = connection.from_environment()
    assert Path(c.ca_path).read_bytes() == pem and Path(c.key_path).read_bytes() == b"key"
    assert c.ca_path == c.cert_path  # the same content, one file
    assert stat.S_IMODE(os.stat(c.key_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(Path(c.key_path).parent).st_mode) == 0o700
    assert connection.from_environment() == c


def test_an_exec_plugin_is_run_as_client_go_runs_it(monkeypatch, tmp_path, no_pod):
    plugin = tmp_path / "bin" / "get-token"
    plugin.parent.mkdir()
    plugin.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        "info = json.loads(os.environ['KUBERNETES_EXEC_INFO'])\n"
        "print(json.dumps({'kind': 'ExecCredential', 'status': {'token': "
        "os.environ['CLUSTER'] + ':' + sys.argv[1] + ':' + info['apiVersion']}}))\n"
    )
    plugin.chmod(0o755)
    spec = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "command": "bin/get-token",  # relative to the kubeconfig, as client-go resolves it
        "args": ["eks"],
        "env": [{"name": "CLUSTER", "value": "prod"}],
    }
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config", {"exec": spec})))
    assert connection.from_environment().token == "prod:eks:client.authentication.k8s.io/v1beta1"

    plugin.write_text("#!/bin/sh\nexit 1\n")
    with pytest.raises(connection.CredentialsError, match=r"exec plugin .*get-token' failed"):
        connection.from_environment()


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ({"auth-provider": {"name": "oidc"}}, "user 'c': auth-provider is not supported"),
        ({"username": "u", "password": "p"}, "user 'c': password, username is not supported"),
    ],
)
def test_unsupported_kubeconfig_auth_is_refused_by_name(monkeypatch, tmp_path, no_pod, user, message):
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config", user)))
    with pytest.raises(connection.CredentialsError, match=message):
        connection.from_environment()


def test_no_kubeconfig_or_a_broken_one_is_one_clear_error(monkeypatch, tmp_path, no_pod):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    with pytest.raises(connection.CredentialsError, match="No configuration found"):
        connection.from_environment()
    (tmp_path / "bad").write_text("clusters: [")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "bad"))
    with pytest.raises(connection.CredentialsError, match=r"bad: not a readable kubeconfig"):
        connection.from_environment()
    config = kubeconfig(tmp_path / "config", {"token": "t"})
    config.write_text(config.read_text().replace("current-context: c", "current-context: other"))
    monkeypatch.setenv("KUBECONFIG", str(config))
    with pytest.raises(connection.CredentialsError, match="current-context 'other' is not defined"):
        connection.from_environment()


def test_the_operator_process_does_not_load_the_kubernetes_client(tmp_path):
    """kopf imports it whenever it is installed; `llmops operator run` keeps it out (~40 MiB)."""
    config = kubeconfig(tmp_path / "config", {"token": "t"}, {"server": "https://127.0.0.1:9"})
    paths = os.pathsep.join(str(ROOT / p) for p in ("cli", "operator", "training-jobs", "inference-service"))
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "llmops", "operator", "run", "-A"],
        capture_output=True, text=True, timeout=120, check=False,
        env={"PYTHONPATH": paths, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KUBECONFIG": str(config)},
    )  # fmt: skip
    assert "cannot reach the API server at https://127.0.0.1:9" in result.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line]
    assert "kopf" in imported and "llmops_operator.controller.handlers" in imported
    # kopf's attempt is listed as a bare "kubernetes.client"; a load lists the package and its modules
    assert not [m for m in imported if m == "kubernetes" or m.startswith("kubernetes.client.")]


@given(
    st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False),
    st.sampled_from(["", "m", "k", "M", "G", "Ki", "Mi", "Gi", "Ti", "e3", "E-2"]),
)
def test_quantities_parse_as_the_kubernetes_client_parses_them(number, suffix):
    from kubernetes.utils.quantity import parse_quantity

    text = f"{number}{suffix}"
    assert children.quantity(text) == parse_quantity(text)


def test_quantities_compare_by_value():
    assert children.same_quantity("1Gi", "1024Mi") and children.same_quantity(2, "2000m")
    assert not children.same_quantity("1Gi", "1G") and not children.same_quantity("1Gb", "1Gb")
    with pytest.raises(ValueError, match="not a quantity: '1 Gi'"):
        children.quantity("1 Gi")
