"""Types both resources share: the camelCase base model, quantities, conditions, scheduling, env."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

GROUP = "llmops.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Kubernetes' quantity grammar (k8s.io/apimachinery/pkg/api/resource), non-negative: a number, then
# one suffix: binary SI (Ki..Ei), decimal SI (m, k, M..E) or a decimal exponent (e3, E-2), never two.
QUANTITY_PATTERN = r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[mkMGTPE]|[eE][+-]?[0-9]+)?$"
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


@dataclass(frozen=True)
class Rule:
    """A cross-field rule, defined once and enforced twice with the same message: by the API server
    (``cel``, an ``x-kubernetes-validations`` entry of the CRD) and by pydantic (``holds``, for
    ``llmops validate`` and the operator). ``holds`` is None for a transition rule (``oldSelf``),
    which only the API server can check. ``cel`` sees the object as written (the CRDs carry no
    defaults), so it must guard optional fields with ``has()``."""

    cel: str
    message: str
    holds: Callable[[Any], bool] | None


IMMUTABLE = Rule("self == oldSelf", "is immutable once the job exists; create a new TrainingJob", None)


def _cel_rules(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    rules: tuple[Rule, ...] = getattr(cls, "RULES", ())
    if rules:
        schema["x-kubernetes-validations"] = [{"rule": r.cel, "message": r.message} for r in rules]


class ApiModel(BaseModel):
    """Base for every spec type: camelCase on the wire, unknown fields rejected, snake_case in Python,
    and the class's :class:`Rule` table both in its CRD schema and checked on validation."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
        json_schema_extra=_cel_rules,
        allow_inf_nan=False,  # NaN passes no bound check by accident; say what it is instead
    )
    RULES: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _rules(self) -> ApiModel:
        for rule in self.RULES:
            if rule.holds is not None and not rule.holds(self):
                raise ValueError(rule.message)
        return self


def _check_quantity(value: str | int) -> str | int:
    if isinstance(value, str) and not re.match(QUANTITY_PATTERN, value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 4, 16Gi)")
    if isinstance(value, int) and value < 0:
        raise ValueError("must not be negative")
    return value


# int-or-string with the quantity pattern; the CRD generator turns the marker into x-kubernetes-int-or-string.
Quantity = Annotated[
    int | str,
    AfterValidator(_check_quantity),
    Field(json_schema_extra={"x-kubernetes-int-or-string": True, "pattern": QUANTITY_PATTERN}),
]


PERCENT_PATTERN = r"^(100|[1-9]?[0-9])%$"


def _check_int_or_percent(value: str | int) -> str | int:
    if isinstance(value, str) and not re.match(PERCENT_PATTERN, value):
        raise ValueError(f"{value!r} must be a count or a percentage such as 25%")
    if isinstance(value, int) and value < 0:
        raise ValueError("must not be negative")
    return value


# A count or a percentage, as PodDisruptionBudgets and rolling updates take it.
IntOrPercent = Annotated[
    int | str,
    AfterValidator(_check_int_or_percent),
    Field(json_schema_extra={"x-kubernetes-int-or-string": True}),
]


class KeyRef(ApiModel):
    """A key of a Secret or ConfigMap in the resource's namespace."""

    name: str = Field(min_length=1, max_length=253)
    key: str = Field(min_length=1, max_length=253)


class EnvVarSource(ApiModel):
    secret_key_ref: KeyRef | None = None
    config_map_key_ref: KeyRef | None = None


class EnvVar(ApiModel):
    """An environment variable: a literal value or a reference, never both (secrets stay in Secrets)."""

    name: str = Field(min_length=1, max_length=253)
    value: str | None = None
    value_from: EnvVarSource | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not ENV_NAME.match(v):
            raise ValueError(f"{v!r} is not a valid environment variable name")
        return v


class Toleration(ApiModel):
    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class Condition(ApiModel):
    """A status condition in the Kubernetes convention, so `kubectl wait --for=condition=X` works."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: str | None = None
    observed_generation: int | None = None


CONDITIONS_SCHEMA: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}


class ObjectMeta(BaseModel):
    """The part of metadata we read; everything else passes through untouched."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = Field(min_length=1)
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    uid: str | None = None
    generation: int | None = None
