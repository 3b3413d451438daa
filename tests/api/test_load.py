"""Parsing and semantic validation: every problem names its field and says how to fix it."""

from __future__ import annotations

import pytest

from llmops_core import api
from tests.manifests import endpoint, example_docs, training_job


def issues(doc: dict) -> dict[str, str]:
    with pytest.raises(api.SpecError) as err:
        api.load(doc)
    return {i.path: i.message for i in err.value.issues}


@pytest.mark.parametrize(("name", "doc"), example_docs(), ids=lambda v: v if isinstance(v, str) else "")
def test_examples_load(name: str, doc: dict) -> None:
    resource = api.load(doc)
    assert resource.metadata.name == doc["metadata"]["name"]


def test_defaults_are_filled() -> None:
    tj = api.load(training_job())
    assert tj.spec.hyperparameters.strategy == "ddp"
    assert tj.spec.resources.nodes == 1
    assert tj.spec.checkpoint.keep == 3
    ie = api.load(endpoint())
    assert ie.spec.runtime == "llmops" and ie.spec.replicas.min == 1


def test_wrong_kind_and_version() -> None:
    assert "kind" in issues({**training_job(), "kind": "Job"})
    assert "apiVersion" in issues({**training_job(), "apiVersion": "llmops.dev/v1"})
    assert issues(["not", "a", "mapping"]) == {"(document)": "expected a mapping, got list"}


def test_unknown_field_is_named() -> None:
    found = issues(training_job(resources={"accelerator": "cpu", "nodez": 2}))
    assert "spec.resources.nodez" in found
    assert "unknown field" in found["spec.resources.nodez"]


def test_enum_error_lists_choices() -> None:
    found = issues(training_job(hyperparameters={"precision": "fp8"}))
    assert "bf16" in found["spec.hyperparameters.precision"]


def test_quantity_is_checked() -> None:
    found = issues(training_job(resources={"accelerator": "cpu", "memory": "lots"}))
    assert "quantity" in found["spec.resources.memory"]
    assert api.load(training_job(resources={"accelerator": "cpu", "memory": "16Gi", "cpu": 4}))


@pytest.mark.parametrize("bad", ["1e3Gi", "-4Gi", "4Gi2", "1.5.2", "4gi", "4Ki5", "e3", "٣Gi", "4 Gi", ""])
def test_quantity_follows_the_kubernetes_grammar_and_is_not_negative(bad: str) -> None:
    assert (
        "quantity"
        in issues(training_job(resources={"accelerator": "cpu", "memory": bad}))["spec.resources.memory"]
    )


@pytest.mark.parametrize(
    "good", ["1e3", "1.5E-2", "+4Gi", "500m", ".5", "5.", "128974848", "129M", "123Mi", "2k"]
)
def test_kubernetes_quantities_are_accepted(good: str) -> None:
    assert api.load(training_job(resources={"accelerator": "cpu", "memory": good}))


def test_model_needs_exactly_one_source() -> None:
    assert "exactly one" in issues(training_job(model={}))["spec.model"]
    assert "exactly one" in issues(training_job(model={"preset": "tiny", "base": "s3://b/m"}))["spec.model"]
    assert "lora needs a base" in issues(training_job(model={"preset": "tiny", "lora": {}}))["spec.model"]
    assert "exactly one" in issues(endpoint(model={}))["spec.model"]


@pytest.mark.parametrize(
    ("accelerator", "instance", "carries"),
    [
        ("cpu", "p5.48xlarge", "nvidia-gpu"),
        ("nvidia-gpu", "trn1.32xlarge", "aws-trainium"),
        ("aws-trainium", "g5.xlarge", "nvidia-gpu"),
        ("nvidia-gpu", "m5.large", "cpu"),
    ],
)
def test_accelerator_must_match_instance_family(accelerator: str, instance: str, carries: str) -> None:
    found = issues(training_job(resources={"accelerator": accelerator, "instanceTypes": [instance]}))
    message = found["spec.resources.instanceTypes[0]"]
    assert carries in message and accelerator in message


def test_inferentia_is_recognised_for_endpoints() -> None:
    found = issues(endpoint(resources={"accelerator": "nvidia-gpu", "instanceTypes": ["inf2.xlarge"]}))
    assert "aws-inferentia" in found["spec.resources.instanceTypes[0]"]


def test_devices_per_node_bounded_by_instance() -> None:
    spec = {"accelerator": "nvidia-gpu", "acceleratorsPerNode": 16, "instanceTypes": ["p5.48xlarge"]}
    found = issues(training_job(resources=spec))
    assert "16 exceeds the 8" in found["spec.resources.acceleratorsPerNode"]
    ep = {"accelerator": "nvidia-gpu", "acceleratorsPerReplica": 8, "instanceTypes": ["g6e.12xlarge"]}
    found = issues(endpoint(runtime="vllm", resources=ep))
    assert "8 exceeds the 4" in found["spec.resources.acceleratorsPerReplica"]


def test_efa_needs_interfaces() -> None:
    gpu = {"accelerator": "nvidia-gpu", "efa": True}
    assert "spec.resources.efaDevices" in issues(training_job(resources=gpu))
    assert (
        "no vpc.amazonaws.com/efa"
        in issues(training_job(resources={**gpu, "instanceTypes": ["g5.xlarge"]}))["spec.resources.efa"]
    )
    assert (
        "EFA needs"
        in issues(training_job(resources={"accelerator": "cpu", "efa": True}))["spec.resources.efa"]
    )


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("Bad_Name", "DNS-1035"), ("9lives", "DNS-1035"), ("a" * 60, "at most")],
)
def test_names_fit_every_derived_object(name: str, fragment: str) -> None:
    doc = training_job()
    doc["metadata"]["name"] = name
    assert fragment in issues(doc)["metadata.name"]


def kubeflow_names(job: dict) -> list[str]:
    """The Pods and headless Services Kubeflow creates per replica: <job>-<role>-<index>."""
    name, specs = job["metadata"]["name"], job["spec"]["pytorchReplicaSpecs"]
    return [f"{name}-{role.lower()}-{i}" for role, spec in specs.items() for i in range(spec["replicas"])]


def test_longest_allowed_names_keep_every_derived_name_a_label() -> None:
    """The longest name validation accepts, rendered with every child and the most nodes, names no
    object (ours or Kubeflow's) longer than a DNS label; one character more is refused."""
    from llmops_core.api.names import MAX_NAME
    from llmops_operator.render import render

    nodes = api.TrainingJob.model_json_schema()["$defs"]["Resources"]["properties"]["nodes"]["maximum"]
    cases = {
        "TrainingJob": training_job(
            resources={"accelerator": "cpu", "nodes": nodes},
            checkpoint={"volumeClaim": {"size": "1Gi"}},
        ),
        "InferenceEndpoint": endpoint(replicas={"min": 2, "max": 3}),
    }
    for kind, doc in cases.items():
        doc["metadata"]["name"] = "a" * MAX_NAME[kind]
        rendered = render(api.load(doc))
        derived = [o["metadata"]["name"] for o in rendered]
        derived += [n for o in rendered if o["kind"] == "PyTorchJob" for n in kubeflow_names(o)]
        assert len(derived) >= 4
        assert max(map(len, derived)) == 63, f"{kind}: longer than a label, or a limit stricter than needed"
        doc["metadata"]["name"] += "a"
        assert "at most" in issues(doc)["metadata.name"]


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [("gs://bucket/x", "unsupported scheme"), ("s3://", "missing bucket"), ("pvc://claim/../etc", "'..'")],
)
def test_locations_are_well_formed(uri: str, fragment: str) -> None:
    assert fragment in issues(training_job(data={"train": uri}))["spec.data.train"]


def test_output_must_outlive_the_pod() -> None:
    assert (
        "lost with the pod" in issues(training_job(output={"location": "/tmp/out"}))["spec.output.location"]
    )


def test_sequence_length_within_preset() -> None:
    found = issues(training_job(hyperparameters={"sequenceLength": 4096}))
    assert "exceeds preset tiny's 512" in found["spec.hyperparameters.sequenceLength"]


def test_rwo_checkpoint_claim_on_many_nodes() -> None:
    res = {"accelerator": "nvidia-gpu", "nodes": 2}
    ckpt = {"volumeClaim": {"size": "10Gi", "accessMode": "ReadWriteOnce"}}
    found = issues(training_job(resources=res, checkpoint=ckpt))
    assert "ReadWriteMany" in found["spec.checkpoint.volumeClaim.accessMode"]


def test_replicas_ordered_and_quantization_per_runtime() -> None:
    assert "must not exceed" in issues(endpoint(replicas={"min": 3, "max": 2}))["spec.replicas"]
    assert (
        "scaling to zero is not supported" in issues(endpoint(replicas={"min": 0, "max": 3}))["spec.replicas"]
    )
    assert (
        "runtime llmops supports"
        in issues(endpoint(server={"quantization": "awq"}))["spec.server.quantization"]
    )
    gpu = {"accelerator": "nvidia-gpu"}
    assert api.load(endpoint(runtime="vllm", resources=gpu, server={"quantization": "awq"}))


def test_every_problem_is_reported_at_once() -> None:
    doc = training_job(
        resources={"accelerator": "cpu", "instanceTypes": ["p5.48xlarge"]}, output={"location": "/x"}
    )
    assert {"spec.resources.instanceTypes[0]", "spec.output.location"} <= set(issues(doc))
