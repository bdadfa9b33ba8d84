"""Model references resolve to loadable directories."""

from __future__ import annotations

import pytest

from tuneops.core.errors import UserError
from workloads.models import resolve_model


def test_embedded_default_is_a_real_instruct_model(embedded_model_dir):
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(embedded_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)
    assert config.model_type == "llama" and config.num_hidden_layers == 30
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert "<|im_start|>assistant" in text
    assert sorted(p.suffix for p in embedded_model_dir.glob("*.safetensors")) == [".safetensors"]


def test_local_directory_resolves_to_itself(tiny_model_dir):
    assert resolve_model(str(tiny_model_dir)) == tiny_model_dir


@pytest.mark.parametrize(
    ("ref", "fragment"),
    [
        ("embedded:nope", "unknown embedded model"),
        ("./no/such/dir", "does not exist"),
    ],
)
def test_bad_references_say_what_is_wrong(ref, fragment):
    with pytest.raises(UserError, match=fragment):
        resolve_model(ref)


def test_s3_prefix_downloads_from_a_real_endpoint(tiny_model_dir, tmp_path, monkeypatch):
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv("TUNEOPS_CACHE_DIR", str(tmp_path / "cache"))
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="models")
        for f in tiny_model_dir.iterdir():
            s3.upload_file(str(f), "models", f"tiny/v1/{f.name}")
        local = resolve_model("s3://models/tiny/v1")
        assert (local / "config.json").is_file()
        assert {p.name for p in local.iterdir()} == {p.name for p in tiny_model_dir.iterdir()}
        with pytest.raises(UserError, match="no objects"):
            resolve_model("s3://models/absent")
    finally:
        server.stop()


def test_registry_lookup_tells_missing_from_unreachable(mlflow_uri, monkeypatch):
    """A version that does not exist is None; a registry that cannot be reached is an error."""
    from mlflow import MlflowClient

    from workloads.models.registry import lookup_version, pin_alias

    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    assert lookup_version("models:/nope@champion", tracking_uri=mlflow_uri) is None
    client.create_registered_model("m")
    assert lookup_version("models:/m@champion", tracking_uri=mlflow_uri) is None
    assert lookup_version("models:/m/3", tracking_uri=mlflow_uri) is None
    with pytest.raises(UserError, match="does not exist in the MLflow registry"):
        pin_alias("models:/m@champion", tracking_uri=mlflow_uri)
    assert pin_alias("models:/m/3") == "models:/m/3"  # a pinned version is left as it is

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(UserError, match="cannot look up models:/m@champion"):
        lookup_version("models:/m@champion", tracking_uri="http://127.0.0.1:9")


@pytest.mark.parametrize(
    ("ref", "kind", "name", "alias", "version"),
    [
        ("models:/m@champion", "models", "m", "champion", None),
        ("models:/m/7", "models", "m", None, "7"),
        ("runs:/abc/model", "runs", "abc", None, None),
        ("embedded:smollm2-135m-instruct", "embedded", "smollm2-135m-instruct", None, None),
        ("s3://bucket/prefix", "s3", "", None, None),
        ("./some/dir", "path", "", None, None),
    ],
)
def test_references_parse_in_one_place(ref, kind, name, alias, version):
    from workloads.models.refs import parse_ref

    parsed = parse_ref(ref)
    assert (parsed.kind, parsed.name, parsed.alias, parsed.version) == (kind, name, alias, version)
    assert str(parsed) == ref


@pytest.mark.parametrize("ref", ["models:/@x", "models:/m@", "models:/m/latest", "runs:/", ""])
def test_malformed_references_are_one_error(ref):
    from workloads.models.refs import parse_ref

    with pytest.raises(UserError):
        parse_ref(ref)


def test_processes_that_need_the_embedded_model_at_once_convert_it_once(tmp_path, monkeypatch):
    """The demo's fine-tune and its base-model answers start together: one converts, the
    other waits for it and then uses its folder."""
    import multiprocessing

    monkeypatch.setenv("TUNEOPS_CACHE_DIR", str(tmp_path))
    calls = tmp_path / "calls"
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(3) as pool:
        folders = pool.map(_ensure_with_a_slow_conversion, [str(calls)] * 3)
    assert len(set(folders)) == 1 and folders[0].startswith(str(tmp_path))
    assert calls.read_text() == "converted\n"  # once, by one of the three


def _ensure_with_a_slow_conversion(calls: str) -> str:
    import time

    from workloads.models import embedded

    def convert(name, target):
        time.sleep(0.5)  # long enough that the other processes arrive meanwhile
        with open(calls, "a") as out:
            out.write("converted\n")
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")
        return target

    embedded.convert_embedded = convert
    return str(embedded.ensure_embedded("smollm2-135m-instruct"))


def test_a_run_and_its_registered_version_share_one_download(
    tiny_model_dir, mlflow_uri, tmp_path, monkeypatch
):
    """``runs:/<run>/model`` (evaluation) and ``models:/name/<n>`` made from it (the model
    server) are one logged model: the second reference finds the first one's copy."""
    import mlflow
    from mlflow import MlflowClient

    from tuneops.core.tracking import use_experiment

    monkeypatch.setenv("TUNEOPS_CACHE_DIR", str(tmp_path / "cache"))
    use_experiment("shared-download", mlflow_uri)  # not whichever one an earlier test left active
    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    with mlflow.start_run() as run:
        logged = mlflow.initialize_logged_model(name="model", source_run_id=run.info.run_id)
        client.log_model_artifacts(logged.model_id, str(tiny_model_dir))
        mlflow.finalize_logged_model(logged.model_id, "READY")
    client.create_registered_model("assistant")
    client.create_model_version(
        "assistant", f"models:/{logged.model_id}", run_id=run.info.run_id, model_id=logged.model_id
    )
    downloads: list[str] = []
    real = mlflow.artifacts.download_artifacts

    def counted(*args, **kwargs):
        downloads.append(kwargs.get("artifact_uri") or args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", counted)
    by_run = resolve_model(f"runs:/{run.info.run_id}/model", tracking_uri=mlflow_uri)
    by_version = resolve_model("models:/assistant/1", tracking_uri=mlflow_uri)
    by_id = resolve_model(f"models:/{logged.model_id}", tracking_uri=mlflow_uri)
    assert by_run == by_version == by_id
    assert (by_run / "config.json").is_file()
    assert downloads == [f"runs:/{run.info.run_id}/model"]
    # A reference MLflow cannot tie to a logged model keeps a copy of its own.
    with mlflow.start_run() as plain:
        mlflow.log_artifacts(str(tiny_model_dir), artifact_path="model")
    other = resolve_model(f"runs:/{plain.info.run_id}/model", tracking_uri=mlflow_uri)
    assert other != by_run and len(downloads) == 2


@pytest.mark.slow
def test_the_conversion_reads_the_gguf_once_and_writes_what_transformers_writes(
    tmp_path, monkeypatch, embedded_tokenizer_dir
):
    """``convert_embedded`` (one parse of the GGUF header, the tokenizer the dataset step read
    already) leaves the same bytes as transformers' own conversion, and gives gguf's functions
    back as they were."""
    import hashlib
    import shutil

    import gguf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workloads.models import embedded

    monkeypatch.setenv("TUNEOPS_CACHE_DIR", str(tmp_path / "cache"))
    name = "smollm2-135m-instruct"
    shutil.copytree(embedded_tokenizer_dir, embedded.tokenizer_cache(name))
    source = embedded.embedded_gguf_path(name)
    parsed: list[str] = []
    real_reader = gguf.GGUFReader

    def counted_reader(*args, **kwargs):
        parsed.append(str(args[0]))
        return real_reader(*args, **kwargs)

    monkeypatch.setattr(gguf, "GGUFReader", counted_reader)
    ours = embedded.convert_embedded(name, tmp_path / "ours")
    assert parsed == [str(source)]
    assert gguf.GGUFReader is counted_reader
    monkeypatch.setattr(gguf, "GGUFReader", real_reader)

    theirs = tmp_path / "theirs"
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
    model.hf_quantizer = None
    del model.config.quantization_config
    model.save_pretrained(theirs)
    tokenizer.save_pretrained(theirs)

    def digests(folder):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}

    assert digests(ours) == digests(theirs)
    assert "model.safetensors" in digests(ours)
