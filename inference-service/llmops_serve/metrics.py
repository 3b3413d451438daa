"""Prometheus metrics under vLLM's names, so dashboards and the HPA work unchanged, plus our own.

Each server gets its own registry (several servers can live in one test process).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 640)
_TOKEN = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        m = ["model_name"]
        self.running = Gauge("vllm:num_requests_running", "Sequences in the running batch", m, registry=r)
        self.waiting = Gauge("vllm:num_requests_waiting", "Sequences waiting to be admitted", m, registry=r)
        self.ttft = Histogram(
            "vllm:time_to_first_token_seconds", "Arrival to first token", m, buckets=_LATENCY, registry=r
        )
        self.itl = Histogram(
            "vllm:inter_token_latency_seconds", "Time per output token", m, buckets=_TOKEN, registry=r
        )
        self.e2e = Histogram(
            "vllm:e2e_request_latency_seconds", "Arrival to last token", m, buckets=_LATENCY, registry=r
        )
        self.prompt_tokens = Counter("vllm:prompt_tokens", "Prompt tokens processed", m, registry=r)
        self.generation_tokens = Counter("vllm:generation_tokens", "Tokens generated", m, registry=r)
        self.requests = Counter("llmops_requests", "HTTP requests by status", ["status"], registry=r)
        self.cache_hits = Counter("llmops_response_cache_hits", "Response cache hits", registry=r)
        self.cache_misses = Counter("llmops_response_cache_misses", "Response cache misses", registry=r)
