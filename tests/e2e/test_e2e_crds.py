"""Issue 10 (1): our CRDs on a real API server: every example applies, bad specs are refused with
our CEL messages, partial specs the docs allow are accepted."""

from __future__ import annotations

import copy

import pytest
from e2e_cluster import GROUP, VERSION, example, scope

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

EXAMPLES = {
    "p5-efa-training.yaml": "trainingjobs",
    "tiny-cpu-training.yaml": "trainingjobs",
    "trn1-training.yaml": "trainingjobs",
    "cpu-endpoint.yaml": "inferenceendpoints",
    "endpoint-from-training.yaml": "inferenceendpoints",
    "vllm-gpu-endpoint.yaml": "inferenceendpoints",
}


@pytest.fixture(scope="module")
def api():
    with scope(operator=False) as s:  # dry runs and refusals: nothing for an operator to do
        yield s


def create(api, plural: str, doc: dict, dry_run: str | None = "All") -> dict:
    ns, custom, _core, _apps = api
    return custom.create_namespaced_custom_object(GROUP, VERSION, ns, plural, doc, dry_run=dry_run)


def refused(api, plural: str, doc: dict) -> str:
    from kubernetes.client.exceptions import ApiException

    with pytest.raises(ApiException) as e:
        create(api, plural, doc)
    assert e.value.status == 422, e.value.body
    return e.value.body


def test_the_crds_are_established():
    from e2e_cluster import kubectl

    for crd in ("trainingjobs.llmops.dev", "inferenceendpoints.llmops.dev", "pytorchjobs.kubeflow.org"):
        out = kubectl(
            "get", "crd", crd, "-o", "jsonpath={.status.conditions[?(@.type=='Established')].status}"
        )
        assert out == "True", crd


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_example_applies(api, name):
    ns = api[0]
    doc = example(name, ns)
    out = create(api, EXAMPLES[name], doc)
    assert out["metadata"]["name"] == doc["metadata"]["name"]
    assert set(doc["spec"]) <= set(out["spec"]), "the API server pruned fields the example sets"


def test_cel_refuses_preset_and_base_together(api):
    doc = example("tiny-cpu-training.yaml", api[0])
    doc["spec"]["model"]["base"] = "s3://bucket/model/"
    assert "set exactly one of preset or base" in refused(api, "trainingjobs", doc)


def test_cel_refuses_lora_without_base(api):
    doc = example("tiny-cpu-training.yaml", api[0])
    doc["spec"]["model"]["lora"] = {"rank": 8}
    assert "lora needs a base model" in refused(api, "trainingjobs", doc)


def test_cel_refuses_two_checkpoint_claims(api):
    doc = example("tiny-cpu-training.yaml", api[0])
    doc["spec"]["checkpoint"]["existingClaim"] = "other"
    assert "set at most one of volumeClaim or existingClaim" in refused(api, "trainingjobs", doc)


def test_cel_refuses_location_and_from_training_job(api):
    doc = example("cpu-endpoint.yaml", api[0])
    doc["spec"]["model"]["fromTrainingJob"] = "tiny-cpu"
    assert "set exactly one of location or fromTrainingJob" in refused(api, "inferenceendpoints", doc)


def test_cel_refuses_min_above_max(api):
    doc = example("cpu-endpoint.yaml", api[0])
    doc["spec"]["replicas"] = {"min": 5, "max": 2}
    assert "min must not exceed max" in refused(api, "inferenceendpoints", doc)


def test_cel_refuses_a_sequence_context_parallel_cannot_split(api):
    doc = example("tiny-cpu-training.yaml", api[0])
    doc["spec"]["hyperparameters"].update(contextParallel=4, sequenceLength=36)
    assert "contextParallel K needs sequenceLength divisible by 2K" in refused(api, "trainingjobs", doc)


def test_schema_refuses_a_bad_accelerator(api):
    doc = example("tiny-cpu-training.yaml", api[0])
    doc["spec"]["resources"]["accelerator"] = "tpu"
    assert "accelerator" in refused(api, "trainingjobs", doc)


@pytest.mark.parametrize("replicas", [{"max": 4}, {"min": 2}])
def test_partial_replicas_are_accepted(api, replicas):
    """docs/ default the missing bound; the CEL rule must not fail with "no such key" (issue 11, 6)."""
    doc = copy.deepcopy(example("cpu-endpoint.yaml", api[0]))
    doc["spec"]["replicas"] = replicas
    out = create(api, "inferenceendpoints", doc)
    assert out["spec"]["replicas"].items() >= replicas.items()


def test_immutable_fields_are_refused_on_update(api):
    from kubernetes.client.exceptions import ApiException

    ns, custom, _core, _apps = api
    doc = example("tiny-cpu-training.yaml", ns)
    create(api, "trainingjobs", doc, dry_run=None)
    name = doc["metadata"]["name"]
    with pytest.raises(ApiException) as e:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, "trainingjobs", name, {"spec": {"hyperparameters": {"maxSteps": 7}}}
        )
    assert e.value.status == 422
    assert "is immutable once the job exists" in e.value.body


def test_the_training_operators_webhook_refuses_an_invalid_pytorchjob(api):
    """Kubeflow's own admission webhook is wired (our PyTorchJobs pass it in the other tests)."""
    from kubernetes.client.exceptions import ApiException

    ns, custom, _core, _apps = api
    pod = {"spec": {"containers": [{"name": "trainer", "image": "busybox"}]}}  # must be named pytorch
    job = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "bad"},
        "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1, "template": pod}}},
    }
    with pytest.raises(ApiException) as e:
        custom.create_namespaced_custom_object("kubeflow.org", "v1", ns, "pytorchjobs", job, dry_run="All")
    assert "denied the request" in e.value.body, e.value.body
