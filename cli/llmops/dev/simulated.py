"""The simulated cluster: a real control plane with fake nodes, without Docker.

kube-apiserver, kube-controller-manager, kube-scheduler and etcd (built from source by
``build.sh``) run as local processes under kwokctl's binary runtime, bound to 127.0.0.1; kwok plays
every kubelet, so pods are scheduled by the real scheduler onto EKS-shaped fake nodes (``nodes.yaml``)
and reported Running, but no container ever runs. The Kubeflow training operator runs as a local
process too, and so, optionally, does ours, authenticated as its ServiceAccount exactly as in a pod.

Everything it starts is recorded under :func:`home` and stopped by :func:`down`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]  # cli/llmops/dev -> repository root (manifests/ lives there)
CLUSTER = "llmops"
EXIT_CODE_ANNOTATION = "llmops.dev/simulated-exit-code"
PV_POOL = 40  # Available static PersistentVolumes kept per StorageClass
OPERATOR_SA = ("llmops-system", "llmops-operator")
SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")  # the client's fixed in-cluster path
CERT_DIR = Path("/tmp/k8s-webhook-server/serving-certs")  # hard-coded in the training operator
# kwok's default stages, exactly what kwokctl uses when given none (read from the module cache)
KWOK_STAGES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
)


class SimulatedError(RuntimeError):
    """A step of bringing the simulated cluster up failed; the message says which and why."""


def versions() -> dict[str, str]:
    """The pins at the top of build.sh (one source of truth for the script and this module)."""
    text = (HERE / "build.sh").read_text()
    return dict(re.findall(r"^([A-Z0-9_]+_VERSION)=(\S+)", text, re.M))


def cache() -> Path:
    if env := os.environ.get("LLMOPS_CONTROLPLANE_CACHE"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llmops" / "controlplane"


def home() -> Path:
    """State of the running cluster: kwokctl's workdir, logs, pid files, the kubeconfig. One per
    checkout (the folder's name ends in a hash of its path), so checkouts on one machine do not
    reuse or stop each other's clusters."""
    if env := os.environ.get("LLMOPS_SIMULATED_HOME"):
        return Path(env)
    checkout = hashlib.sha256(str(REPO).encode()).hexdigest()[:8]
    return (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llmops" / f"simulated-{checkout}"
    )


@dataclass(frozen=True)
class Bins:
    k8s: Path
    etcd: Path
    kwok: Path
    training_operator: Path

    @classmethod
    def for_versions(cls, root: Path | None = None) -> Bins:
        v, root = versions(), root or cache()
        return cls(
            k8s=root / f"k8s-{v['K8S_VERSION']}" / "bin",
            etcd=root / f"etcd-{v['ETCD_VERSION']}" / "bin",
            kwok=root / f"kwok-{v['KWOK_VERSION']}" / "bin",
            training_operator=root / f"training-operator-{v['TRAINING_OPERATOR_VERSION']}" / "bin",
        )

    def files(self) -> list[Path]:
        return [
            *(
                self.k8s / b
                for b in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
            ),
            self.etcd / "etcd",
            self.kwok / "kwok",
            self.kwok / "kwokctl",
            self.training_operator / "training-operator.v1",
        ]

    def missing(self) -> list[Path]:
        return [f for f in self.files() if not os.access(f, os.X_OK)]

    @property
    def kubectl(self) -> Path:
        return self.k8s / "kubectl"


def build(log=print) -> Bins:
    """Run build.sh when a binary is missing (a cold build takes minutes; see docs/e2e.md)."""
    bins = Bins.for_versions()
    if bins.missing():
        if not shutil.which("go"):
            raise SimulatedError(
                "the simulated cluster is built from source: install Go >= 1.26 (https://go.dev/dl/)"
            )
        log(f"building the control plane into {cache()} (first time only) ...")
        subprocess.run(["bash", str(HERE / "build.sh")], check=True)
    if missing := bins.missing():
        raise SimulatedError(f"build.sh left these missing: {', '.join(map(str, missing))}")
    return bins


def gomodcache() -> Path:
    out = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def module_dir(module: str, version: str) -> Path:
    """A module's source from the Go module cache (downloaded when absent): upstream YAML is read
    from there at run time, never committed."""
    d = gomodcache() / f"{module}@{version}"
    if not d.is_dir():
        subprocess.run(["go", "mod", "download", f"{module}@{version}"], check=True, env=_goenv())
    return d


def _goenv() -> dict[str, str]:
    return {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}


def pytorchjob_crd() -> Path:
    v = versions()["TRAINING_OPERATOR_VERSION"]
    d = module_dir("github.com/kubeflow/training-operator", v)
    return d / "manifests/base/crds/kubeflow.org_pytorchjobs.yaml"


def kwokctl_config(bins: Bins) -> str:
    """kwokctl.yaml with the binaries filled in, then kwok's default stages and ours (stages.yaml)."""
    text = string.Template((HERE / "kwokctl.yaml").read_text()).substitute(
        k8s=bins.k8s, etcd=bins.etcd, kwok=bins.kwok
    )
    stages = module_dir("sigs.k8s.io/kwok", versions()["KWOK_VERSION"]) / "kustomize" / "stage"
    docs = [text] + [(stages / s).read_text() for s in KWOK_STAGES] + [(HERE / "stages.yaml").read_text()]
    return "\n---\n".join(d.strip() + "\n" for d in docs)


# ---- small process helpers -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pidfile(name: str) -> Path:
    return home() / "run" / f"{name}.pid"


def alive(name: str) -> int | None:
    """The pid of our process ``name`` when it is still running."""
    try:
        pid = int(_pidfile(name).read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    try:  # a zombie child of this process counts as gone
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return None
    except ChildProcessError:
        pass
    return pid


def spawn(name: str, argv: list[str], env: dict[str, str]) -> int:
    """Start ``argv`` detached (own session), log to run/NAME.log, record its pid."""
    (home() / "run").mkdir(parents=True, exist_ok=True)
    log = open(home() / "run" / f"{name}.log", "wb")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    _pidfile(name).write_text(str(proc.pid))
    return proc.pid


def stop(name: str, timeout: float = 15) -> bool:
    """SIGTERM the process group we started under ``name``; SIGKILL after ``timeout``."""
    pid = alive(name)
    _pidfile(name).unlink(missing_ok=True)
    if pid is None:
        return False
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return True
            except ChildProcessError:
                pass
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.2)
    return True


def wait_for(check, timeout: float, what: str, interval: float = 0.5):
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            if result := check():
                return result
        except Exception as e:
            last = e
        time.sleep(interval)
    raise SimulatedError(
        f"timed out after {timeout:.0f} s waiting for {what}" + (f": {last}" if last else "")
    )


# ---- the cluster -----------------------------------------------------------------------------------


class Cluster:
    """kubectl against the simulated cluster (also used by the e2e suite)."""

    def __init__(
        self, bins: Bins | None = None, kubeconfig: Path | None = None, kubectl: str | None = None
    ) -> None:
        self.bins = bins or Bins.for_versions()
        self.kubeconfig = kubeconfig or home() / "kwok" / "clusters" / CLUSTER / "kubeconfig.yaml"
        self.kubectl_path = kubectl or str(self.bins.kubectl)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        proc = subprocess.run(
            [self.kubectl_path, "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
        )
        if check and proc.returncode:
            raise SimulatedError(f"kubectl {' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
        return proc.stdout

    def ready(self) -> bool:
        if not self.kubeconfig.exists():
            return False
        try:
            return self.kubectl("get", "--raw", "/readyz", check=True).strip() == "ok"
        except SimulatedError:
            return False

    def server(self) -> tuple[str, int]:
        url = self.kubectl("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}")
        host, port = url.removeprefix("https://").rsplit(":", 1)
        return host, int(port)

    def apply(self, path_or_text: Path | str, *extra: str) -> None:
        if isinstance(path_or_text, Path):
            self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path_or_text), *extra)
        else:
            self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", *extra, input=path_or_text)

    def get_json(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json"))


def _kwokctl(bins: Bins, *args: str, config: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "KWOK_WORKDIR": str(home() / "kwok"), "KWOK_RUNTIME": "binary"}
    argv = [str(bins.kwok / "kwokctl"), "--name", CLUSTER]
    if config:
        argv += ["-c", str(config)]
    return subprocess.run([*argv, *args], env=env, capture_output=True, text=True)


def _create_cluster(bins: Bins, config: str, log) -> None:
    cfg = home() / "kwokctl-config.yaml"
    home().mkdir(parents=True, exist_ok=True)
    cfg.write_text(config)
    log("starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (127.0.0.1) ...")
    proc = _kwokctl(
        bins, "create", "cluster", "--runtime", "binary", "--kubeconfig", "", "--wait", "3m", config=cfg
    )
    if proc.returncode:
        raise SimulatedError(f"kwokctl create cluster failed:\n{proc.stderr[-4000:]}")


def top_up_volumes(c: Cluster, pool: int = PV_POOL) -> int:
    """Keep ``pool`` Available static PersistentVolumes per StorageClass; returns how many were made."""
    pvs = c.get_json("pv", "-l", "llmops.dev/simulated-volume=true").get("items", [])
    made = []
    for sc, size, driver in (("gp3", "10Ti", "ebs.csi.aws.com"), ("fsx-lustre", "9600Gi", "fsx.csi.aws.com")):
        available = sum(
            1
            for pv in pvs
            if pv["spec"].get("storageClassName") == sc
            and (pv.get("status") or {}).get("phase") in (None, "Available", "Pending")
            and not pv["spec"].get("claimRef")
        )
        for _ in range(pool - available):
            name = f"sim-{sc}-{uuid.uuid4().hex[:8]}"
            made.append(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": name, "labels": {"llmops.dev/simulated-volume": "true"}},
                    "spec": {
                        "storageClassName": sc,
                        "capacity": {"storage": size},
                        "accessModes": ["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany"],
                        "persistentVolumeReclaimPolicy": "Retain",
                        "csi": {"driver": driver, "volumeHandle": name},
                    },
                }
            )
    if made:
        c.kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": made}))
    return len(made)


def install(c: Cluster, log) -> None:
    """Nodes, storage, our CRDs and the training operator's PyTorchJob CRD (idempotent)."""
    if not (REPO / "manifests" / "crds").is_dir():
        raise SimulatedError(f"run from a checkout of the llmops repository: {REPO / 'manifests'} is missing")
    log("adding nodes (2 x p5.48xlarge, 1 x trn1.32xlarge, 3 x m6i.8xlarge), storage classes, volumes ...")
    c.kubectl("apply", "-f", str(HERE / "nodes.yaml"))  # create keeps status (capacity), as kubelets do
    c.apply(HERE / "storage.yaml")
    top_up_volumes(c)
    log("installing CRDs (ours and the PyTorchJob CRD, server-side: it is over 256 KiB) ...")
    c.apply(REPO / "manifests" / "crds")
    c.apply(pytorchjob_crd())
    crds = (
        "crd/trainingjobs.llmops.dev",
        "crd/inferenceendpoints.llmops.dev",
        "crd/pytorchjobs.kubeflow.org",
    )
    # kubectl wait errs (not waits) while a new CRD has no status yet
    wait_for(
        lambda: c.kubectl("wait", "--for=condition=Established", "--timeout=30s", *crds) or True,
        90,
        "the CRDs to be established",
    )
    # An established CRD's storage may still answer 429 ("storage is (re)initializing") for a moment:
    # wait until each kind lists, so a first `kubectl apply` never meets it.
    wait_for(
        lambda: c.kubectl("get", "trainingjobs,inferenceendpoints,pytorchjobs", "-A") is not None,
        60,
        "the CRDs to be served",
    )


def start_training_operator(c: Cluster, log) -> None:
    if alive("training-operator"):
        return
    log("starting the Kubeflow training operator ...")
    c.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: kubeflow}\n")
    c.kubectl("-n", "kubeflow", "create", "secret", "generic", "training-operator-webhook-cert", check=False)
    # its webhook reads the certificate from a fixed folder (a mounted Secret in a pod): ours is
    # mounted there in a private mount namespace, so clusters on one machine do not share it
    certs = home() / "webhook-certs"
    shutil.rmtree(certs, ignore_errors=True)
    certs.mkdir(parents=True)
    private = os.geteuid() == 0 and shutil.which("unshare") is not None
    if not private:
        certs = CERT_DIR
        shutil.rmtree(certs, ignore_errors=True)
        certs.mkdir(parents=True)
    probe, webhook = free_port(), free_port()
    # TMPDIR unset: its webhook server reads certificates from $TMPDIR/k8s-webhook-server
    env = {k: v for k, v in os.environ.items() if k != "TMPDIR"}
    env |= {"MY_POD_NAMESPACE": "kubeflow", "KUBECONFIG": str(c.kubeconfig)}
    argv = [
        str(c.bins.training_operator / "training-operator.v1"),
        "--enable-scheme=pytorchjob",
        "--metrics-bind-address=0",
        f"--health-probe-bind-address=127.0.0.1:{probe}",
        f"--webhook-server-port={webhook}",  # no host flag: the webhook listens on all interfaces
        "--leader-elect=false",
    ]
    if private:
        CERT_DIR.mkdir(parents=True, exist_ok=True)  # the mount point
        argv = mounted_argv(certs, CERT_DIR, argv)
    spawn("training-operator", argv, env)

    def cert_written() -> bool:
        # the cert rotator fills the Secret; in a pod it is mounted at CERT_DIR, here we copy it
        data = c.get_json("-n", "kubeflow", "secret", "training-operator-webhook-cert").get("data") or {}
        if "tls.crt" not in data:
            return False
        (certs / "tls.key").write_bytes(base64.b64decode(data["tls.key"]))
        (certs / "tls.crt").write_bytes(base64.b64decode(data["tls.crt"]))
        return True

    wait_for(cert_written, 90, "the training operator's webhook certificate")

    def ready() -> bool:
        if not alive("training-operator"):
            raise SimulatedError(
                f"the training operator exited: see {home() / 'run' / 'training-operator.log'}"
            )
        with urllib.request.urlopen(f"http://127.0.0.1:{probe}/readyz", timeout=2) as r:
            return r.status == 200

    wait_for(ready, 120, "the training operator to be ready")
    install_pytorchjob_webhook(c, webhook)


def install_pytorchjob_webhook(c: Cluster, port: int) -> None:
    """The training operator's PyTorchJob validating webhook, served by the local process: its
    Service is an ExternalName for 127.0.0.1 (the API server's default, cluster-IP resolver dials
    an ExternalName's host at ``port``) and the server name it checks is the Service's DNS name,
    which the operator's generated certificate carries (training-operator.kubeflow.svc)."""
    ca = (c.get_json("-n", "kubeflow", "secret", "training-operator-webhook-cert").get("data") or {})[
        "ca.crt"
    ]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "training-operator", "namespace": "kubeflow"},
        "spec": {"type": "ExternalName", "externalName": "127.0.0.1"},
    }
    webhook = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "validator.training-operator.kubeflow.org"},
        "webhooks": [
            {
                "name": "validator.pytorchjob.training-operator.kubeflow.org",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 10,
                "clientConfig": {
                    "caBundle": ca,
                    "service": {
                        "name": "training-operator",
                        "namespace": "kubeflow",
                        "port": port,
                        "path": "/validate-kubeflow-org-v1-pytorchjob",
                    },
                },
                "rules": [
                    {
                        "apiGroups": ["kubeflow.org"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["pytorchjobs"],
                    }
                ],
            }
        ],
    }
    c.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": [service, webhook]}))


def operator_credentials(c: Cluster, duration: str = "24h") -> Path:
    """The operator's ServiceAccount bound to its ClusterRole (the Namespace, ServiceAccount,
    ClusterRole and binding of manifests/install.yaml), and a token for it from the TokenRequest API,
    written where a pod has them (token, ca.crt, namespace) in a folder of ours; returns that folder."""
    rbac = ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding")
    docs = yaml.safe_load_all((REPO / "manifests" / "install.yaml").read_text())
    c.apply(yaml.safe_dump_all([d for d in docs if d and d["kind"] in rbac]))
    ns, sa = OPERATOR_SA
    token = c.kubectl("-n", ns, "create", "token", sa, f"--duration={duration}").strip()
    d = home() / "serviceaccount"
    d.mkdir(parents=True, exist_ok=True)
    (d / "token").write_text(token)
    (d / "namespace").write_text(ns)
    ca = c.kubectl(
        "config", "view", "--raw", "--minify", "-o", "jsonpath={.clusters[0].cluster.certificate-authority}"
    )
    if ca:
        shutil.copy(ca, d / "ca.crt")
    else:
        data = c.kubectl(
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.certificate-authority-data}",
        )
        (d / "ca.crt").write_bytes(base64.b64decode(data))
    return d


def operator_argv(namespaces: list[str] | None) -> list[str]:
    scope = [f"--namespace={n}" for n in namespaces] if namespaces else ["--all-namespaces"]
    return [sys.executable, "-m", "llmops", "operator", "run", *scope, "--log-format=plain"]


def in_pod_argv(sa_dir: Path, argv: list[str]) -> list[str]:
    """``argv`` in a private mount namespace where ``sa_dir`` is mounted at the fixed in-cluster path
    (/var/run/secrets/kubernetes.io/serviceaccount), as the kubelet mounts it; needs root."""
    return mounted_argv(sa_dir, SA_DIR, argv)


def mounted_argv(source: Path, target: Path, argv: list[str]) -> list[str]:
    """``argv`` in a private mount namespace with ``source`` bind-mounted at ``target``."""
    script = 'mount --bind "$0" "$1" && shift && exec "$@"'
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        str(source),
        str(target),
        *argv,
    ]


def start_operator(c: Cluster, namespaces: list[str] | None = None, name: str = "operator", log=print) -> int:
    """Our operator as a local process, authenticated exactly as in a pod: the in-cluster code path
    (KUBERNETES_SERVICE_HOST/PORT and the token file), no kubeconfig, only the ClusterRole's rights."""
    if pid := alive(name):
        return pid
    sa_dir = operator_credentials(c)
    host, port = c.server()
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG",)}
    env |= {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": str(port), "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join([*map(str, _source_roots()), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    SA_DIR.mkdir(parents=True, exist_ok=True)  # the mount point (empty on the host)
    if os.geteuid() != 0 or not shutil.which("unshare"):
        raise SimulatedError("running the operator as its ServiceAccount needs root and unshare(1)")
    log(f"starting the llmops operator as ServiceAccount {'/'.join(OPERATOR_SA)} ...")
    return spawn(name, in_pod_argv(sa_dir, operator_argv(namespaces)), env)


def _source_roots() -> list[Path]:
    return [REPO / d for d in ("cli", "operator", "training-jobs", "inference-service")]


def state() -> dict:
    try:
        return json.loads((home() / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def up(operator: bool = True, namespaces: list[str] | None = None, log=print) -> Path:
    """Bring the simulated cluster up (or reuse the running one); returns the kubeconfig path."""
    bins = build(log)
    c = Cluster(bins)
    t0 = time.monotonic()
    config = kwokctl_config(bins)
    digest = hashlib.sha256(config.encode()).hexdigest()
    if c.ready() and state().get("config") == digest:
        log(f"reusing the running simulated cluster ({c.kubeconfig})")
    else:
        if c.ready():
            log("the running simulated cluster has another configuration: recreating it")
            down(log)
        _kwokctl(bins, "delete", "cluster")  # leftovers of a cluster whose processes died
        _create_cluster(bins, config, log)
        wait_for(c.ready, 60, "the API server")
    install(c, log)
    start_training_operator(c, log)
    if operator:
        start_operator(c, namespaces, log=log)
    (home() / "state.json").write_text(json.dumps({"kubeconfig": str(c.kubeconfig), "config": digest}))
    log(
        f"simulated cluster ready in {time.monotonic() - t0:.0f} s; logs: {home() / 'run'}, {home() / 'kwok'}"
    )
    return c.kubeconfig


def stop_operator(name: str = "operator") -> bool:
    return stop(name)


def down(log=print) -> None:
    """Stop everything :func:`up` started and delete the cluster's state."""
    run = home() / "run"
    for pidfile in sorted(run.glob("*.pid")) if run.is_dir() else []:
        if stop(pidfile.stem):
            log(f"stopped {pidfile.stem}")
    bins = Bins.for_versions()
    if (bins.kwok / "kwokctl").exists() and (home() / "kwok").exists():
        proc = _kwokctl(bins, "delete", "cluster")
        if proc.returncode:
            log(proc.stderr.strip())
        else:
            log("deleted the cluster (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok)")
    shutil.rmtree(home(), ignore_errors=True)
