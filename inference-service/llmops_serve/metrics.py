"""Prometheus metrics under vLLM's names, so the same dashboards and HPA rules work for both runtimes.

Every series exists at 0 from the start (labels are bound when the server starts), so an autoscaler
reading `vllm:num_requests_running` on a fresh idle pod sees 0 rather than nothing. Each server has
its own registry (several servers can live in one test process). The request-level series follow
vLLM V1: queue time is arrival to scheduling, prefill time scheduling to first token, decode time
first to last token, inference time scheduling to last token.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 640)
_TOKEN = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5)
_REQUEST = (0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680)
_COUNTS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000)
_ITERATION = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
FINISH_REASONS = ("stop", "length", "abort", "error")


class Metrics:
    def __init__(self, model_name: str) -> None:
        self.registry = r = CollectorRegistry()
        m = ["model_name"]

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, m, registry=r).labels(model_name)

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, m, registry=r).labels(model_name)

        def histogram(name: str, doc: str, buckets: tuple) -> Histogram:
            return Histogram(name, doc, m, buckets=buckets, registry=r).labels(model_name)

        self.running = gauge("vllm:num_requests_running", "Sequences in the running batch")
        self.waiting = gauge("vllm:num_requests_waiting", "Sequences waiting to be admitted")
        self.kv_cache_usage = gauge(
            "vllm:kv_cache_usage_perc", "KV cache held by the batch, as a fraction (0-1) of its budget"
        )
        self.preemptions = counter(
            "vllm:num_preemptions", "Preempted sequences (admission reserves room, so never)"
        )
        self.prompt_tokens = counter("vllm:prompt_tokens", "Prompt tokens processed")
        self.generation_tokens = counter("vllm:generation_tokens", "Tokens generated")
        self.ttft = histogram("vllm:time_to_first_token_seconds", "Arrival to first token", _LATENCY)
        self.itl = histogram("vllm:inter_token_latency_seconds", "Time per output token", _TOKEN)
        self.e2e = histogram("vllm:e2e_request_latency_seconds", "Arrival to last token", _LATENCY)
        self.queue_time = histogram("vllm:request_queue_time_seconds", "Arrival to scheduling", _REQUEST)
        self.prefill_time = histogram(
            "vllm:request_prefill_time_seconds", "Scheduling to first token", _REQUEST
        )
        self.decode_time = histogram("vllm:request_decode_time_seconds", "First to last token", _REQUEST)
        self.inference_time = histogram(
            "vllm:request_inference_time_seconds", "Scheduling to last token", _REQUEST
        )
        self.request_prompt_tokens = histogram(
            "vllm:request_prompt_tokens", "Prompt tokens per finished request", _COUNTS
        )
        self.request_generation_tokens = histogram(
            "vllm:request_generation_tokens", "Generated tokens per finished request", _COUNTS
        )
        self.iteration_tokens = histogram(
            "vllm:iteration_tokens_total", "Tokens processed per engine step", _ITERATION
        )
        success = Counter(
            "vllm:request_success", "Finished requests by reason", [*m, "finished_reason"], registry=r
        )
        self.success = {reason: success.labels(model_name, reason) for reason in FINISH_REASONS}
        self.requests = Counter("llmops_requests", "HTTP requests by status", ["status"], registry=r)
        self.cache_hits = Counter("llmops_response_cache_hits", "Response cache hits", registry=r)
        self.cache_misses = Counter("llmops_response_cache_misses", "Response cache misses", registry=r)
