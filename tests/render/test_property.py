"""Over hundreds of generated specs: each is either refused with clear messages, or renders to
objects that pass strict schema validation. Nothing in between (no crash, no invalid object)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from llmops_core import api
from llmops_core.api.hardware import INSTANCES
from llmops_core.api.presets import PRESETS
from llmops_operator.render import render
from tests.kube import assert_valid

INSTANCE_TYPES = [*INSTANCES, "m7i.4xlarge", "c5.large", "p3.2xlarge", "bogus"]
# Mostly valid values with some invalid ones mixed in, so both outcomes are exercised often.
good_names = st.from_regex(r"[a-z]([a-z0-9-]{0,40}[a-z0-9])?", fullmatch=True)
names = st.one_of(
    good_names, good_names, good_names, st.from_regex(r"[A-Z_0-9][a-z]{0,5}|[a-z]{60}", fullmatch=True)
)
quantities = st.sampled_from(["1", "500m", "4Gi", "16Gi", 2, "8", "1.5", "lots"])
locations = st.sampled_from(
    [
        "s3://bucket/prefix/",
        "pvc://claim/dir",
        "pvc://other/x.jsonl",
        "s3://b/k",
        "/data/corpus.txt",
        "gs://nope",
    ]
)


def instance_types(accelerator: str) -> st.SearchStrategy[list[str]]:
    matching = [t for t, i in INSTANCES.items() if i.accelerator == accelerator] or [
        "m7i.4xlarge",
        "c5.large",
    ]
    return st.lists(st.sampled_from(matching * 4 + INSTANCE_TYPES), max_size=2)


@st.composite
def training_jobs(draw: st.DrawFn) -> dict[str, Any]:
    accelerator = draw(st.sampled_from(["nvidia-gpu", "aws-trainium", "cpu"]))
    model = draw(st.one_of(
        st.fixed_dictionaries({"preset": st.sampled_from(list(PRESETS))}),
        st.fixed_dictionaries({"base": locations}, optional={"lora": st.just({"rank": 8})}),
        *[st.fixed_dictionaries({"preset": st.sampled_from(list(PRESETS))})] * 3,
        st.fixed_dictionaries({"preset": st.just("tiny"), "lora": st.just({})}),
    ))  # fmt: skip
    resources = draw(st.fixed_dictionaries(
        {"accelerator": st.just(accelerator)},
        optional={
            "acceleratorsPerNode": st.integers(1, 16),
            "nodes": st.integers(1, 8),
            "instanceTypes": instance_types(accelerator),
            "cpu": quantities,
            "memory": quantities,
            "efa": st.booleans(),
        },
    ))  # fmt: skip
    checkpoint = draw(st.one_of(
        st.just({}),
        st.fixed_dictionaries({"volumeClaim": st.fixed_dictionaries(
            {"size": quantities}, optional={"accessMode": st.sampled_from(["ReadWriteOnce", "ReadWriteMany"])})}),
        st.fixed_dictionaries({"existingClaim": st.just("shared")}, optional={"s3": locations}),
    ))  # fmt: skip
    hyper = draw(st.fixed_dictionaries({}, optional={
        "sequenceLength": st.sampled_from([8, 128, 512, 2048, 8192]),
        "precision": st.sampled_from(["bf16", "fp16", "fp32"]),
        "strategy": st.sampled_from(["ddp", "fsdp"]),
        "batchSize": st.integers(0, 64),
    }))  # fmt: skip
    scheduling = draw(st.fixed_dictionaries({}, optional={
        "gangScheduler": st.sampled_from(["none", "volcano"]),
        "queue": st.just("team"),
        "tolerations": st.lists(st.fixed_dictionaries({"key": st.just("spot"), "operator": st.just("Exists")}),
                                max_size=1),
    }))  # fmt: skip
    return {
        "apiVersion": "llmops.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": draw(names)},
        "spec": {
            "model": model,
            "data": {"train": draw(locations)},
            "output": {"location": draw(locations)},
            "resources": resources,
            "checkpoint": checkpoint,
            "hyperparameters": hyper,
            "scheduling": scheduling,
            "runPolicy": {"suspend": draw(st.booleans())},
        },
    }


@st.composite
def endpoints(draw: st.DrawFn) -> dict[str, Any]:
    low, high = sorted((draw(st.integers(0, 6)), draw(st.integers(1, 6))))
    if draw(st.integers(0, 9)) == 0:
        low, high = high + 1, high  # now and then out of order
    accelerator = draw(st.sampled_from(["nvidia-gpu", "nvidia-gpu", "cpu", "cpu", "aws-inferentia"]))
    return {
        "apiVersion": "llmops.dev/v1alpha1",
        "kind": "InferenceEndpoint",
        "metadata": {"name": draw(names)},
        "spec": {
            "model": draw(
                st.one_of(
                    st.fixed_dictionaries({"location": locations}),
                    st.fixed_dictionaries({"fromTrainingJob": good_names}),
                )
            ),
            "runtime": draw(
                st.sampled_from(["llmops", "vllm"] if accelerator == "nvidia-gpu" else ["llmops"])
            ),
            "resources": draw(
                st.fixed_dictionaries(
                    {"accelerator": st.just(accelerator)},
                    optional={
                        "acceleratorsPerReplica": st.integers(1, 2),
                        "instanceTypes": instance_types(accelerator),
                    },
                )
            ),
            "replicas": {"min": low, "max": high},
            "autoscaling": {"metric": draw(st.sampled_from(["cpu", "requestsInFlight"]))},
            "server": {"quantization": draw(st.sampled_from(["none", "none", "int8", "awq"]))},
            "scheduling": {
                "antiAffinity": draw(st.sampled_from(["preferred", "required"])),
                "zoneSpread": draw(st.sampled_from(["preferred", "required", "none"])),
            },
        },
    }


def check(doc: dict[str, Any]) -> None:
    try:
        resource = api.load(doc)
    except api.SpecError as e:
        event("refused")
        assert e.issues
        for issue in e.issues:
            assert issue.path and issue.message, issue
            assert issue.path.split(".")[0].split("[")[0] in {"spec", "metadata", "apiVersion", "kind"}, issue
        return
    event("rendered")
    for obj in render(resource, resolved_model="pvc://trained/model"):
        assert_valid(obj, versions=["1.29"])


SETTINGS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(training_jobs())
def test_training_jobs_fail_clearly_or_render_valid_objects(doc: dict[str, Any]) -> None:
    check(doc)


@SETTINGS
@given(endpoints())
def test_endpoints_fail_clearly_or_render_valid_objects(doc: dict[str, Any]) -> None:
    check(doc)
