"""Each cross-field rule is defined once (a model's ``RULES``) and enforced alike by the API server
(CEL in the CRD) and by pydantic: the CRDs carry exactly the tables' rules, and on partial and
conflicting specs the CEL rule (evaluated with cel-python, as the API server sees the object: as
written, without defaults) and the pydantic check agree, and CEL never fails with "no such key"."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import celpy
import pytest
from pydantic import ValidationError

from llmops_core.api.common import ApiModel, Rule
from llmops_core.api.inference import DisruptionBudget, ModelSource, Replicas
from llmops_core.api.training import CheckpointSpec, Hyperparameters, ModelSpec
from llmops_core.crd import all_crds

# Specs for each model with rules: partial, conflicting and valid ones, as a user might write them.
SAMPLES: dict[type[ApiModel], list[dict[str, Any]]] = {
    ModelSpec: [
        {}, {"preset": "tiny"}, {"base": "s3://b/m"}, {"preset": "tiny", "base": "s3://b/m"},
        {"preset": "tiny", "lora": {}}, {"base": "s3://b/m", "lora": {}}, {"lora": {}},
    ],
    CheckpointSpec: [
        {}, {"volumeClaim": {"size": "1Gi"}}, {"existingClaim": "c"},
        {"volumeClaim": {"size": "1Gi"}, "existingClaim": "c"}, {"interval": 10},
    ],
    ModelSource: [{}, {"location": "s3://b/m"}, {"fromTrainingJob": "t"}, {"location": "x", "fromTrainingJob": "t"}],
    Replicas: [
        {}, {"min": 2}, {"max": 3}, {"min": 0}, {"min": 0, "max": 3}, {"min": 3, "max": 2},
        {"min": 2, "max": 5}, {"min": 4}, {"max": 1}, {"min": -1, "max": 2}, {"min": 2, "max": 1},
    ],
    Hyperparameters: [
        {}, {"contextParallel": 1, "sequenceLength": 63}, {"contextParallel": 2}, {"contextParallel": 3},
        {"contextParallel": 4, "sequenceLength": 64}, {"contextParallel": 4, "sequenceLength": 36},
    ],
    DisruptionBudget: [{}, {"minAvailable": 1}, {"maxUnavailable": "25%"}, {"minAvailable": 1, "maxUnavailable": 1}],
}  # fmt: skip


def schema_rules(node: Any) -> Iterator[dict[str, str]]:
    if isinstance(node, dict):
        yield from node.get("x-kubernetes-validations", [])
        for value in node.values():
            yield from schema_rules(value)
    elif isinstance(node, list):
        for value in node:
            yield from schema_rules(value)


def all_models() -> set[type[ApiModel]]:
    found, todo = set(), [ApiModel]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo += cls.__subclasses__()
    return found


def cel(rule: Rule, doc: dict[str, Any]) -> bool:
    env = celpy.Environment()
    program = env.program(env.compile(rule.cel))
    return bool(program.evaluate({"self": celpy.json_to_cel(doc), "oldSelf": celpy.json_to_cel(doc)}))


def test_the_crds_hold_exactly_the_rules_tables() -> None:
    in_crds = {(r["rule"], r["message"]) for crd in all_crds() for r in schema_rules(crd)}
    in_tables = {(r.cel, r.message) for cls in all_models() for r in cls.RULES}
    assert in_crds == in_tables


def test_every_model_with_rules_is_sampled() -> None:
    with_checks = {cls for cls in all_models() if any(r.holds for r in cls.RULES)}
    assert with_checks == set(SAMPLES)


@pytest.mark.parametrize("cls", list(SAMPLES), ids=lambda c: c.__name__)
def test_cel_and_pydantic_agree(cls: type[ApiModel]) -> None:
    outcomes: dict[str, set[bool]] = {r.message: set() for r in cls.RULES if r.holds}
    for doc in SAMPLES[cls]:
        try:
            cls.model_validate(doc)
            refused = None
        except ValidationError as e:
            refused = e.errors()[0]["msg"].removeprefix("Value error, ")
        for rule in cls.RULES:
            if rule.holds is None:
                assert cel(rule, doc), f"{rule.cel} (a transition rule) on an unchanged object"
                continue
            ok = cel(rule, doc)  # raises on "no such key"
            outcomes[rule.message].add(ok)
            if not ok:
                assert refused is not None, (
                    f"{cls.__name__} {doc}: CEL refuses ({rule.message}), pydantic accepts"
                )
            elif refused == rule.message:
                pytest.fail(f"{cls.__name__} {doc}: pydantic refuses ({rule.message}), CEL accepts")
        if refused in outcomes:
            assert not all(cel(r, doc) for r in cls.RULES if r.holds), f"{doc}: only pydantic refuses"
    for message, seen in outcomes.items():
        assert seen == {True, False}, (
            f"{cls.__name__}: the samples never make {message!r} {'fail' if True in seen else 'pass'}"
        )


def test_the_old_replicas_rule_failed_on_partial_specs() -> None:
    """What the has() guards fix: the API server failing a spec that names only max."""
    with pytest.raises(celpy.CELEvalError, match="no such member"):
        cel(Rule("self.min <= self.max", "", None), {"max": 3})
