"""The benchmark's baseline: one `model.generate()` at a time behind a lock (what we must beat).

Speaks just enough of /v1/completions (streaming, include_usage, ignore_eos) for bench/serve.py.
Run: python bench/serve_naive.py MODEL_DIR PORT
"""

from __future__ import annotations

import asyncio
import json
import sys

import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from transformers import AutoModelForCausalLM, AutoTokenizer


class QueueStreamer:
    """transformers streamer that hands each new token to the request's asyncio queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
        self.loop, self.queue, self.prompt_seen = loop, queue, False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate() first passes the prompt
            self.prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            self.loop.call_soon_threadsafe(self.queue.put_nowait, token)

    def end(self) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, None)


def build(model_dir: str) -> FastAPI:
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    lock = asyncio.Lock()
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.post("/v1/completions")
    async def completions(request: Request) -> StreamingResponse:
        body = await request.json()
        ids = tok(body["prompt"], return_tensors="pt")["input_ids"]
        n = int(body.get("max_tokens", 16))
        loop, queue = asyncio.get_running_loop(), asyncio.Queue()

        def run() -> None:
            with torch.inference_mode():
                model.generate(
                    ids,
                    max_new_tokens=n,
                    min_new_tokens=n if body.get("ignore_eos") else 0,
                    do_sample=False,
                    pad_token_id=tok.eos_token_id,
                    streamer=QueueStreamer(loop, queue),
                )

        async def stream():
            async with lock:
                task = asyncio.create_task(asyncio.to_thread(run))
                count = 0
                while (token := await queue.get()) is not None:
                    count += 1
                    text = tok.decode([token])
                    yield f"data: {json.dumps({'choices': [{'index': 0, 'text': text}]})}\n\n"
                await task
            usage = {"prompt_tokens": ids.shape[1], "completion_tokens": count}
            yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    return app


if __name__ == "__main__":
    uvicorn.run(build(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
