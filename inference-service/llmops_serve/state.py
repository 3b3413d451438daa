"""What the routes share: settings, metrics, response cache, API keys, and the engine once loaded."""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmops_serve import loader
from llmops_serve.engine import Engine
from llmops_serve.metrics import Metrics
from llmops_serve.protocol import now
from llmops_serve.response_cache import ResponseCache
from llmops_serve.settings import Settings

log = logging.getLogger("llmops_serve.state")
DEFAULT_MAX_MODEL_LEN = 2048


class State:
    """Everything the routes share; `engine` is None until the model is loaded."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics(settings.name)
        self.cache = ResponseCache(settings.cache_size)
        self.keys = settings.keys()
        self.engine: Engine | None = None
        self.tokenizer: Any = None
        self.vocab = 0
        self.max_model_len = settings.max_model_len or DEFAULT_MAX_MODEL_LEN
        self.load_error: str | None = None
        self.draining = False
        self.inflight = 0
        self.created = now()

    def load(self, on_failure: Callable[[], None] | None = None) -> None:
        s = self.settings
        try:
            model, tokenizer = loader.load(
                s.model,
                dtype=s.dtype,
                quantize=s.quantize,
                cache_dir=Path(s.cache_dir) if s.cache_dir else None,
                pvc_root=Path(s.pvc_root) if s.pvc_root else None,
            )
        except Exception as exc:
            log.exception("model load failed")
            self.load_error = str(exc)
            if on_failure:
                on_failure()
            return
        positions = getattr(model.config, "max_position_embeddings", None) or DEFAULT_MAX_MODEL_LEN
        self.max_model_len = min(s.max_model_len or positions, positions)
        self.tokenizer = tokenizer
        engine = Engine(
            model,
            tokenizer,
            max_batch_size=s.max_batch_size,
            max_queue=s.max_queue,
            max_tokens_in_flight=s.max_tokens_in_flight,
            max_model_len=self.max_model_len,
            metrics=self.metrics,
        )
        self.vocab = engine.vocab
        engine.start()
        self.engine = engine

    @functools.lru_cache(maxsize=65536)  # noqa: B019 - one State per server, lives as long as it
    def token_text(self, token: int) -> str:
        """One token as text, as logprobs report it."""
        return self.tokenizer.decode([token], skip_special_tokens=False)

    def check_key(self, header: str | None) -> bool:
        if not self.keys:
            return True
        scheme, _, token = (header or "").partition(" ")
        ok = False
        for key in self.keys:  # compare against every key: timing does not reveal which matched
            ok |= hmac.compare_digest(token.strip().encode(), key.encode())
        return ok and scheme.lower() == "bearer"
