"""The KServe model in-process: v1 and v2 requests through the engine, bad ones refused."""

from __future__ import annotations

import asyncio

import pytest
import torch

from workloads.serve.config import ServeConfig
from workloads.serve.model import TextGenerationModel, parse_parameters, read_prompts


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    config = ServeConfig.model_validate(
        # The current thread count, so loading leaves the test process as it found it.
        {"dtype": "float32", "device": "cpu", "cpu_threads": torch.get_num_threads()}
    )
    served = TextGenerationModel(config, str(tiny_model_dir))
    assert served.load() and served.ready
    yield served
    served.stop()
    assert not served.ready


def test_load_summary_names_the_dtype_and_why(model):
    summary = model.load_summary()
    assert summary.startswith(f"loaded cloudops-assistant from {model.model_ref} (cpu")
    assert "dtype float32: float32 as configured (" in summary
    assert model.loaded.precision_reason in summary


def test_v1_instances_get_one_prediction_each(model):
    payload = {
        "instances": ["What is a pod?", {"prompt": "kubectl"}],
        "parameters": {"max_tokens": 5, "chat": False},
    }
    reply = asyncio.run(model.predict(payload))
    assert len(reply["predictions"]) == 2
    assert all(isinstance(text, str) for text in reply["predictions"])


def test_v2_bytes_tensor_gets_a_bytes_output(model):
    from kserve.protocol.infer_type import InferInput, InferRequest

    request = InferRequest(
        model_name=model.name,
        request_id="r-1",
        infer_inputs=[InferInput("text", [2], "BYTES", ["What is Helm?", b"node pool"])],
        parameters={"max_tokens": 4},
    )
    reply = asyncio.run(model.predict(request))
    assert reply.id == "r-1" and reply.model_name == "cloudops-assistant"
    (output,) = reply.outputs
    assert output.name == "text" and output.datatype == "BYTES" and output.shape == [2]


def test_a_request_over_the_limits_is_invalid_input(model):
    from kserve.errors import InvalidInput

    with pytest.raises(InvalidInput, match="at most 512"):
        asyncio.run(model.predict({"instances": ["x"], "parameters": {"max_tokens": 600}}))
    with pytest.raises(InvalidInput, match="no prompts"):
        asyncio.run(model.predict({"instances": []}))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"foo": 1}, "expected a v2 request"),
        ({"instances": [{"text": "x"}]}, "each instance is a string"),
        ({"instances": [3]}, "each instance is a string"),
        ({"instances": [["x"]]}, "each instance is a string"),
    ],
)
def test_unreadable_payload_is_invalid_input(payload, message):
    from kserve.errors import InvalidInput

    with pytest.raises(InvalidInput, match=message):
        read_prompts(payload)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"max_tokens": "many"}, "max_tokens must be a number"),
        ({"max_tokens": 1.5}, "max_tokens must be a whole number"),
        ({"max_tokens": True}, "max_tokens must be a number"),
        ({"temperature": 3}, "temperature must be between 0 and 2"),
        ({"chat": "yes"}, "chat must be true or false"),
        ({"stop": [""]}, "stop must be a string or a list"),
    ],
)
def test_bad_parameters_are_invalid_input(params, message):
    from kserve.errors import InvalidInput

    with pytest.raises(InvalidInput, match=message):
        parse_parameters(params)


def test_parameters_defaults_and_a_single_stop_string():
    assert parse_parameters({}) == {
        "max_tokens": None,
        "temperature": 0.0,
        "stop": [],
        "chat": True,
    }
    assert parse_parameters({"stop": "END", "max_tokens": 8.0})["stop"] == ["END"]
    assert parse_parameters({"max_tokens": 8.0})["max_tokens"] == 8


def test_too_many_v1_prompts_are_invalid_input_and_queue_nothing(model):
    from kserve.errors import InvalidInput

    most = model.state.limits.max_prompts
    with pytest.raises(InvalidInput, match=f"at most {most}"):
        asyncio.run(model.predict({"instances": ["x"] * (most + 1)}))
    assert len(model.state.engine._pending) == 0


def test_the_sampler_drops_rather_than_grows_when_its_writer_falls_behind(tmp_path):
    import threading

    from workloads.serve import metrics
    from workloads.serve.sampling import PromptSampler

    release = threading.Event()
    sampler = PromptSampler(1.0, str(tmp_path / "log.jsonl"), max_pending=2)
    sampler._write = lambda item: release.wait(10)  # a writer stuck on a slow disk
    dropped = metrics.PROMPTS_DROPPED._value.get()
    taken = [sampler.offer("/x", f"prompt {i}") for i in range(6)]
    # One is with the writer, two wait; the other three are dropped and counted.
    assert taken.count(True) <= 3 and taken[-1] is False
    assert metrics.PROMPTS_DROPPED._value.get() - dropped == taken.count(False)
    release.set()
    sampler.close()


def test_a_lone_surrogate_does_not_stop_the_s3_log(monkeypatch):
    import boto3
    from moto import mock_aws

    from workloads.serve.sampling import PromptSampler

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="prompts")
        sampler = PromptSampler(1.0, "s3://prompts/serve", flush_every=5)
        sampler.offer("/x", "bad \ud800 prompt")
        for i in range(9):
            sampler.offer("/x", f"good prompt {i}")
        sampler.close()
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="prompts")["Contents"]]
        lines = [
            line
            for key in keys
            for line in s3.get_object(Bucket="prompts", Key=key)["Body"].read().splitlines()
        ]
    assert len(keys) == 2 and len(lines) == 10
