"""`llmops operator run`: options, usage errors, lazy imports; kopf settings use our prefix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kopf
from click.testing import CliRunner

from llmops.main import cli
from llmops_operator.controller import handlers, kopfstate

ROOT = Path(__file__).parents[2]


def test_help_lists_the_options():
    out = CliRunner().invoke(cli, ["operator", "run", "--help"]).output
    for option in (
        "--namespace",
        "--all-namespaces",
        "--liveness",
        "--log-format",
    ):
        assert option in out


def test_needs_a_scope():
    result = CliRunner().invoke(cli, ["operator", "run"])
    assert result.exit_code == 2 and "--all-namespaces" in result.output
    result = CliRunner().invoke(cli, ["operator", "run", "-n", "a", "-A"])
    assert result.exit_code == 2


def python(code: str) -> str:
    """What ``code`` prints, run in a fresh interpreter that sees only the CLI and the operator."""
    env_path = f"{ROOT / 'cli'}:{ROOT / 'operator'}"
    out = subprocess.run(
        [sys.executable, "-c", code], env={"PYTHONPATH": env_path}, capture_output=True, text=True, check=True
    )
    return out.stdout


def test_the_cli_does_not_import_kopf_until_the_operator_runs():
    code = "import sys, llmops.main; print('kopf' in sys.modules, 'kubernetes' in sys.modules)"
    assert python(code).strip() == "False False"


def test_settings_keep_retries_under_our_prefix_the_diff_base_in_memory_and_post_events():
    settings = kopf.OperatorSettings()
    handlers.configure(settings)
    assert settings.persistence.progress_storage.prefix == "llmops.dev"
    assert isinstance(settings.persistence.diffbase_storage, kopfstate.MemoryDiffBase)
    assert settings.posting.enabled is True


def test_the_operator_process_tunes_the_garbage_collector():
    """``run`` freezes what startup imported and raises the thresholds (bench/operator_bench.py shows why)."""
    code = (
        "import gc, kopf\n"
        "from llmops_operator.controller import run\n"
        "kopf.run = lambda **kw: print(gc.get_threshold(), gc.get_freeze_count() > 1000, sorted(kw['namespaces']))\n"
        "run.run(namespaces=['a'])\n"
    )
    assert python(code).strip() == "(2000, 10, 10) True ['a']"


def test_the_operator_process_runs_on_uvloop():
    """``run`` gives kopf uvloop's event loop (compiled transports and TLS; controller/run.py says why)."""
    code = (
        "import asyncio, kopf\n"
        "from llmops_operator.controller import run\n"
        "kopf.run = lambda loop, **kw: print(type(loop).__module__, loop.is_running())\n"
        "run.run(namespaces=['a'])\n"
    )
    assert python(code).split() == ["uvloop", "False"]


def test_the_diff_base_is_kopfs_essence_without_copying_status():
    """kopf diffs this essence to tell an update from a status write: ours must equal kopf's own."""

    class KopfDefault(kopf.DiffBaseStorage):
        def fetch(self, *, body: kopf.Body) -> None: ...

        def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: object) -> None: ...

    raw = {
        "apiVersion": "llmops.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {
            "name": "a",
            "uid": "u",
            "generation": 3,
            "labels": {"team": "x"},
            "annotations": {"note": "y", "kubectl.kubernetes.io/last-applied-configuration": "{}"},
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {"model": {"layers": [1, 2]}},
        "status": {"phase": "Running"},
    }
    body = kopf.Body(raw)
    ours = kopfstate.MemoryDiffBase().build(body=body)
    assert ours == KopfDefault().build(body=body)
    assert ours == {"spec": raw["spec"], "metadata": {"labels": {"team": "x"}, "annotations": {"note": "y"}}}
    ours["spec"]["model"]["layers"].append(3)  # a copy: the body is untouched
    assert raw["spec"]["model"]["layers"] == [1, 2]


def test_kopf_lines_per_handler_only_with_verbose():
    """kopf's "Handler ... succeeded" (a line per watch event) is dropped unless --verbose; its warnings stay."""
    code = (
        "import logging, kopf\n"
        "from llmops_operator.controller import run\n"
        "kopf.run = lambda **kw: None\n"
        "for verbose in (False, True):\n"
        "    run.run(namespaces=['a'], verbose=verbose)\n"
        "    objects = logging.getLogger('kopf.objects')\n"
        "    print(objects.isEnabledFor(logging.INFO), objects.isEnabledFor(logging.WARNING))\n"
    )
    assert python(code).split() == ["False", "True", "True", "True"]
