"""The server's prompt log on S3 (moto), read back by the drift command's loader."""

from __future__ import annotations

import boto3
from moto.server import ThreadedMotoServer

from workloads.monitor.prompts import load_prompts
from workloads.serve.sampling import PromptSampler


def test_sampled_prompts_round_trip_through_s3(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        boto3.client("s3").create_bucket(Bucket="logs")
        sampler = PromptSampler(1.0, "s3://logs/serve/prompts", flush_every=4, seed=0)
        prompts = [f"how do I scale deployment {i}? token=ghp_{'a' * 36}" for i in range(10)]
        assert all(sampler.offer("chat", p) for p in prompts)
        sampler.close()

        keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="logs")["Contents"]]
        # 10 records at 4 per object: two full objects and the remainder flushed at close.
        assert len(keys) == 3 and all(k.startswith("serve/prompts/") for k in keys)
        back = load_prompts("s3://logs/serve/prompts", window=100)
    finally:
        moto.stop()
    assert len(back) == 10
    assert all("ghp_" not in p for p in back), "a token reached the log unscrubbed"
    assert [p.split("?")[0] for p in back] == [p.split("?")[0] for p in prompts]


def test_sampling_rate_takes_a_share(tmp_path):
    sampler = PromptSampler(0.25, str(tmp_path / "p.jsonl"), seed=1)
    taken = sum(sampler.offer("chat", "what is helm?") for _ in range(400))
    sampler.close()
    lines = (tmp_path / "p.jsonl").read_text().splitlines()
    assert len(lines) == taken and 60 < taken < 140
