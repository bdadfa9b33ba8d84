"""The baseline of ``scripts/bench_serve.py``: one ``model.generate`` per request behind FastAPI.

The plain way to put a model behind HTTP: FastAPI runs the endpoint on its thread pool, so
concurrent requests run concurrent, unbatched ``generate`` calls. Started by the benchmark as a
child process:

    python scripts/bench_serve_baseline.py PORT MODEL_DIR THREADS DTYPE
"""

from __future__ import annotations

import subprocess
import sys
import time

from pydantic import BaseModel


class Ask(BaseModel):
    prompt: str
    max_tokens: int


def baseline_app(model_dir: str, threads: int, dtype: str):
    import torch
    from fastapi import FastAPI
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).eval()
    app = FastAPI()

    @app.get("/ready")
    def ready() -> dict:
        return {"ready": True}

    @app.post("/generate")
    def generate(ask: Ask) -> dict:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": ask.prompt}], add_generation_prompt=True, tokenize=False
        )
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(
                **ids,
                max_new_tokens=ask.max_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        new = out[0, ids["input_ids"].shape[1] :]
        return {
            "text": tokenizer.decode(new, skip_special_tokens=True),
            "completion_tokens": int((new != tokenizer.eos_token_id).sum()),
        }

    return app


def start_baseline(port: int, model_dir: str, threads: int, dtype: str) -> subprocess.Popen:
    """This module as the baseline server on 127.0.0.1:``port``."""
    return subprocess.Popen([sys.executable, __file__, str(port), model_dir, str(threads), dtype])


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the baseline server exited with code {proc.returncode}")
        try:
            if httpx.get(url, timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise SystemExit("the baseline server did not become ready")


def main(argv: list[str]) -> None:
    import uvicorn

    port, model_dir, threads, dtype = argv
    app = baseline_app(model_dir, int(threads), dtype)
    uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning")


if __name__ == "__main__":
    main(sys.argv[1:])
