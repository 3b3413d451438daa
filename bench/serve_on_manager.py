"""Our server with transformers' continuous-batching manager in place of our engine.

The alternative docs/benchmarks-serve.md weighs: keep our API, admission, metrics, auth and drain
layers, and let ``model.init_continuous_batching()`` (the manager behind ``transformers serve
--continuous-batching``: paged KV cache, its own scheduler) generate. ``bench/serve.py --servers llmops
on-manager transformers`` starts it beside ours and measures both in one run.

    python bench/serve_on_manager.py --model DIR --port 18434 [any flag of python -m llmops_serve]

The model is loaded as the server loads it, linears packed for oneDNN (the manager calls the model's
own forward, so the projections stay unfused). Plain greedy requests only, what the benchmark sends;
any other ends with an error event. Per-step gauges (running, waiting) stay at 0: the manager keeps
its own queues.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "inference-service"), str(ROOT / "operator")]
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads, as the server sets it

from transformers import ContinuousBatchingConfig, GenerationConfig  # noqa: E402

from llmops_serve import __main__ as server  # noqa: E402
from llmops_serve import engine, loader, state  # noqa: E402
from llmops_serve.detok import IncrementalDetokenizer, StopChecker  # noqa: E402
from llmops_serve.sampling import RowState  # noqa: E402

# The paged KV cache as bench/serve.py sizes it for `transformers serve` (--cb-block-size, --cb-num-blocks).
PAGE_SIZE, NUM_BLOCKS = 32, 512


class ManagerEngine(engine.Engine):
    """`Engine`'s interface (submit, cancel, events to each request's queue) over the manager."""

    def __init__(self, model, tokenizer, **options) -> None:  # type: ignore[no-untyped-def]
        super().__init__(model, tokenizer, **options)
        config = GenerationConfig(do_sample=False, eos_token_id=-1)  # EOS is chosen per request
        cb = ContinuousBatchingConfig(page_size=PAGE_SIZE, num_blocks=NUM_BLOCKS)
        self.manager = model.init_continuous_batching(generation_config=config, continuous_batching_config=cb)
        self.ids: dict[int, str] = {}  # id(seq) -> the manager's request id

    def start(self) -> None:
        self.manager.start()

    def shutdown(self) -> None:
        self.manager.stop(block=True, timeout=10)

    def submit(self, seqs: list[engine.Sequence]) -> None:
        for seq in seqs:
            seq.scheduled = time.monotonic()
            seq.row = RowState.create(seq.params, self.vocab, self.device)
            seq.detok = IncrementalDetokenizer(self.tokenizer)
            seq.stopper = StopChecker(seq.params.stop)
            if not seq.params.plain:
                self._finish(seq, "error", error="this benchmark server runs plain greedy requests only")
                continue
            rid = self.ids[id(seq)] = uuid.uuid4().hex
            self.manager.register_result_handler(rid, functools.partial(self._on_output, seq))
            eos = -1 if seq.params.ignore_eos else sorted(self.eos_ids)
            self.manager.add_request(
                seq.prompt_ids,
                request_id=rid,
                max_new_tokens=seq.params.max_tokens,
                streaming=True,
                eos_token_id=eos,
            )
        self._deliver()

    def cancel(self, seqs: list[engine.Sequence]) -> None:
        for seq in seqs:
            if not seq.finished and id(seq) in self.ids:
                self.manager.cancel_request(self.ids.pop(id(seq)))
                self._finish(seq, "cancelled")
        self._deliver()

    def _on_output(self, seq: engine.Sequence, output) -> None:  # type: ignore[no-untyped-def]
        """On the event loop: the manager's cumulative tokens, the new ones through our bookkeeping."""
        if output.error is not None:
            self._finish(seq, "error", error=output.error)
        else:
            for token in output.generated_tokens[len(seq.output_ids) :]:
                if seq.finished or self._accept(seq, token, None):
                    break
            if output.is_finished() and not seq.finished:  # it stopped for a reason of its own
                self._finish(seq, "length")
        rid = self.ids.pop(id(seq), None) if seq.finished else None
        if rid is not None and not output.is_finished():
            self.manager.cancel_request(rid)  # a stop string ended it first
        self._deliver()

    def _deliver(self) -> None:
        outbox, self._outbox = self._outbox, {}
        for items in outbox.values():
            engine._deliver(items)


@contextlib.contextmanager
def manager_in_place() -> Iterator[None]:
    """While open, the server loads its model unfused (the manager runs the model's own forward) and
    generates with a ManagerEngine."""
    saved = loader.fuse_llama, state.Engine
    loader.fuse_llama, state.Engine = (lambda model: False), ManagerEngine
    try:
        yield
    finally:
        loader.fuse_llama, state.Engine = saved


def main() -> int:
    with manager_in_place():
        return server.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
