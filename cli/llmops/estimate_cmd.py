"""``llmops estimate``: memory per accelerator, the instance types that fit, and what they cost.

Also :func:`fit_problems`, which ``llmops validate`` uses to warn (or, with ``--strict-fit``, fail)
when a manifest's estimate exceeds its instance type's accelerator memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, replace
from typing import TYPE_CHECKING

import click

from .documents import Document, Problem, parse, read
from .errors import CliError

if TYPE_CHECKING:  # the core loads inside the command: `llmops --help` must stay fast
    from llmops_core.api import Issue, Resource, TrainingJob
    from llmops_core.estimate import ModelShape

# The core's estimate module defines these; repeated here so that --help needs no import.
OPTIMIZERS = ["adamw", "adamw-8bit", "sgd"]
PRICES_AS_OF = "2025-08-01"


def fit_problems(parsed: Iterable[tuple[Document, Resource | None, list[Issue]]]) -> list[Problem]:
    """One problem per valid resource that would not fit its instance type (see ``check_fit``).

    An endpoint serving a TrainingJob given in the same command is sized by that job's model.
    """
    from llmops_core.api import Issue, TrainingJob
    from llmops_core.estimate import check_fit, shape_for

    parsed = list(parsed)
    jobs = {(r.metadata.namespace, r.metadata.name): r for _, r, _ in parsed if isinstance(r, TrainingJob)}
    out = []
    for doc, resource, _ in parsed:
        if resource is None:
            continue
        source = getattr(resource.spec.model, "from_training_job", None)
        job = jobs.get((resource.metadata.namespace, source)) if source else None
        finding = check_fit(resource, shape_for(job) if job else None)
        if finding is not None:
            out.append(Problem(doc, Issue("spec.resources.instanceTypes", finding.message)))
    return out


@click.command()
@click.argument("source")
@click.option(
    "--model", "model_spec", help="The model, when SOURCE's is remote: preset, config.json or count."
)
@click.option("--inference", is_flag=True, help="Estimate serving instead of training (for a model SOURCE).")
@click.option(
    "--batch-size", type=click.IntRange(1), help="Sequences per device (training) or in flight (serving)."
)
@click.option("--seq-len", type=click.IntRange(1), help="Training sequence length.")
@click.option("--context", type=click.IntRange(1), help="Serving context (prompt + output tokens).")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), help="Training precision.")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default="adamw", show_default=True)
@click.option("--checkpointing/--no-checkpointing", default=None, help="Activation checkpointing.")
@click.option("--strategy", type=click.Choice(["ddp", "fsdp"]))
@click.option(
    "--devices", type=click.IntRange(1), help="Training world size, or devices per serving replica."
)
@click.option(
    "--context-parallel",
    type=click.IntRange(1),
    help="Ranks each training sequence is split across (hyperparameters.contextParallel).",
)
@click.option("--lora-rank", type=click.IntRange(1), help="Train LoRA adapters of this rank (base frozen).")
@click.option("--dtype", type=click.Choice(["fp32", "bf16", "fp16"]), help="Serving weight/KV dtype.")
@click.option("--quantization", type=click.Choice(["none", "int8", "fp8", "int4"]), help="Serving weights.")
@click.option("--runtime", type=click.Choice(["llmops", "vllm"]), help="Serving runtime.")
@click.option("--steps", type=click.IntRange(1), help="Optimizer steps, for the cost of a run.")
@click.option(
    "--mfu",
    type=click.FloatRange(0.01, 1.0),
    default=0.4,
    show_default=True,
    help="Model FLOPs utilisation for run time.",
)
@click.option(
    "--live-prices", is_flag=True, help=f"Ask the AWS Price List API instead of the {PRICES_AS_OF} table."
)
@click.option(
    "-o", "--output", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def estimate(source: str, model_spec: str | None, inference: bool, fmt: str, **opts) -> None:
    """Memory per accelerator, the EKS instance types that fit, and cost.

    SOURCE is a TrainingJob or InferenceEndpoint manifest, a preset name, a Hugging Face config.json
    (or its directory) or a parameter count such as 7B. Options override what the manifest says.
    Formulas, sources and limits: docs/estimate.md.

    \b
    Examples:
      llmops estimate manifests/examples/p5-efa-training.yaml
      llmops estimate 1b --seq-len 8192 --batch-size 1 --checkpointing --strategy fsdp --devices 16
      llmops estimate ./llama-3-8b/config.json --lora-rank 16 -o json
      llmops estimate 70B --inference --context 8192 --quantization fp8 --runtime vllm
      llmops estimate endpoint.yaml --model ./model-dir --live-prices
    """
    from llmops_core.api import TrainingJob
    from llmops_core.estimate import EstimateError
    from llmops_core.pricing import PricingError

    try:
        shape, resource = _source(source, model_spec)
        if isinstance(resource, TrainingJob) or (resource is None and not inference):
            report = _training(shape, resource, opts)
        else:
            report = _inference(shape, resource, opts)
        if opts["live_prices"]:
            _apply_live_prices(report)
    except (EstimateError, PricingError) as e:
        raise CliError(str(e)) from None
    if fmt == "json":
        click.echo(json.dumps(report, indent=2))
    else:
        _print_table(report)


def _source(source: str, model_spec: str | None) -> tuple[ModelShape, Resource | None]:
    from llmops_core.estimate import EstimateError, load_model_shape, shape_for

    if source.endswith((".yaml", ".yml")) or source == "-":
        docs, problems = read([source])
        parsed = list(parse(docs))
        problems += [Problem(d, i) for d, _, issues in parsed for i in issues]
        if problems:
            raise EstimateError(str(problems[0]))
        if len(parsed) != 1:
            raise EstimateError(f"{source}: expected one resource, found {len(parsed)}")
        resource = parsed[0][1]
        shape = load_model_shape(model_spec) if model_spec else shape_for(resource)
        if shape is None:
            raise EstimateError(
                f"{source}: the model is not a preset or a local directory with config.json; "
                "say which with --model (a preset, a config.json or a parameter count such as 7B)"
            )
        return shape, resource
    return load_model_shape(model_spec or source), None


def _training(shape: ModelShape, job: TrainingJob | None, o: dict) -> dict:
    from llmops_core.estimate import (
        LORA_DEFAULT_TARGETS,
        EstimateError,
        LoraPlan,
        TrainingPlan,
        plan_for_job,
        run_tokens,
        training_memory,
        training_options,
    )

    plan = plan_for_job(job) if job else TrainingPlan()
    lora = plan.lora
    if o["lora_rank"]:
        lora = LoraPlan(o["lora_rank"], lora.targets if lora else LORA_DEFAULT_TARGETS)
    plan = replace(
        plan,
        batch_size=o["batch_size"] or plan.batch_size,
        sequence_length=o["seq_len"] or plan.sequence_length,
        precision=o["precision"] or plan.precision,
        optimizer=o["optimizer"],
        activation_checkpointing=plan.activation_checkpointing
        if o["checkpointing"] is None
        else o["checkpointing"],
        strategy=o["strategy"] or plan.strategy,
        world_size=o["devices"] or plan.world_size,
        context_parallel=o["context_parallel"] or plan.context_parallel,
        lora=lora,
    )
    cp = plan.context_parallel
    if plan.world_size % cp or plan.sequence_length % (2 * cp):
        raise EstimateError(
            f"--context-parallel {cp} needs a world size ({plan.world_size}) divisible by it "
            f"and a sequence length ({plan.sequence_length}) divisible by {2 * cp}"
        )
    mem = training_memory(shape, plan)
    tokens = run_tokens(job) if job and not o["steps"] else None
    if o["steps"]:
        # The ranks of a context-parallel group share their sequences.
        groups = plan.world_size // plan.context_parallel
        tokens = o["steps"] * plan.batch_size * plan.sequence_length * groups
    report = {
        "kind": "training",
        "model": _model(shape),
        "plan": asdict(plan),
        "memory_per_device": {
            "weights": mem.weights,
            "weight_copies_bf16": mem.weight_copies,
            "gradients": mem.gradients,
            "optimizer_states": mem.optimizer,
            "ddp_buckets": mem.ddp_buckets,
            "fsdp_gathered_layers": mem.fsdp_gathered,
            "activations": mem.activations,
            "loss_transients": mem.loss_transients,
            "recompute": mem.recompute,
            "context_parallel_exchange": mem.cp_exchange,
            "optimizer_step_transients": mem.step_transients,
            "peak": mem.peak,
            "naive_sum": mem.naive_sum,
        },
        "trainable_parameters": mem.trainable_parameters,
        "run_tokens": tokens,
        "options": [o_.as_dict() for o_ in training_options(shape, plan, tokens, o["mfu"])],
    }
    return _with_fit(report, job, shape)


def _inference(shape: ModelShape, endpoint, o: dict) -> dict:
    from llmops_core.estimate import InferencePlan, inference_memory, inference_options, plan_for_endpoint

    plan = (
        plan_for_endpoint(endpoint, shape)
        if endpoint
        else InferencePlan(context=shape.max_position_embeddings)
    )
    plan = replace(
        plan,
        batch_size=o["batch_size"] or plan.batch_size,
        context=o["context"] or plan.context,
        dtype=o["dtype"] or plan.dtype,
        quantization=o["quantization"] or plan.quantization,
        devices=o["devices"] or plan.devices,
        runtime=o["runtime"] or plan.runtime,
    )
    mem = inference_memory(shape, plan)
    report = {
        "kind": "inference",
        "model": _model(shape),
        "plan": asdict(plan),
        "memory_per_device": {
            "weights": mem.weights,
            "kv_cache": mem.kv_cache,
            "kv_growth": mem.kv_growth,
            "working": mem.working,
            "peak": mem.peak,
        },
        "options": [o_.as_dict() for o_ in inference_options(shape, plan)],
    }
    return _with_fit(report, endpoint, shape)


def _with_fit(report: dict, resource: Resource | None, shape: ModelShape) -> dict:
    from llmops_core.estimate import check_fit
    from llmops_core.pricing import AS_OF, REGION

    finding = check_fit(resource, shape) if resource is not None else None
    report["fit"] = finding.as_dict() if finding else None
    report["prices"] = {"region": REGION, "as_of": AS_OF, "source": "table"}
    return report


def _model(shape: ModelShape) -> dict:
    return asdict(shape) | {"parameters": shape.parameters}


def _apply_live_prices(report: dict) -> None:
    from llmops_core.pricing import REGION, live_prices

    live = live_prices([o["instance_type"] for o in report["options"]])
    for o in report["options"]:
        price = live.get(o["instance_type"])
        o["usd_per_hour"] = None if price is None else round(price * o["count"], 4)
        o["usd_per_run"] = (
            None if price is None or o["hours"] is None else round(o["hours"] * o["usd_per_hour"], 2)
        )
    report["prices"] = {"region": REGION, "as_of": "live", "source": "AWS Price List API"}


def _gib(n: int) -> str:
    return f"{n / 1024**3:,.2f} GiB"


def _print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    m = report["model"]
    inferred = " (shape inferred from the count)" if m["inferred"] else ""
    console.print(f"[bold]{report['kind']}[/] of {m['source']}: {m['parameters']:,} parameters{inferred}")
    console.print(", ".join(f"{k}={v}" for k, v in report["plan"].items() if not isinstance(v, dict)))
    mem = Table("memory per device", "bytes", box=None)
    for key, value in report["memory_per_device"].items():
        mem.add_row(key.replace("_", " "), _gib(value), style="bold" if key == "peak" else None)
    console.print(mem)
    prices = report["prices"]
    opts = Table(
        "instance type", "count", "devices", "GiB/device", "need/device", "$/hour", "hours", "$/run",
        title=f"instance types that fit (on-demand {prices['region']}, prices {prices['as_of']})",
    )  # fmt: skip
    for o in report["options"]:
        opts.add_row(
            o["instance_type"], str(o["count"]), str(o["devices"]), str(o["device_memory_gib"]),
            _gib(o["needed_bytes"]), _money(o["usd_per_hour"]),
            "-" if o["hours"] is None else f"{o['hours']:.1f}", _money(o["usd_per_run"]),
        )  # fmt: skip
    console.print(opts if report["options"] else "no listed instance type fits")
    if report["plan"].get("runtime") == "vllm":
        console.print(
            "vLLM fills what the weights leave with KV cache: an instance fits when one sequence does"
        )
    if report["fit"]:
        console.print(f"[yellow]does not fit[/]: {report['fit']['message']}")


def _money(v: float | None) -> str:
    return "-" if v is None else f"{v:,.2f}"
