"""The sink's security model: loopback by default, a token when one is set, the NetworkPolicy
acknowledgement for the cluster (KServe's logger cannot send a token), and HTTPS."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from tuneops.cli import app
from tuneops.core.errors import UserError
from workloads.monitor.config import check_exposure, load_monitor_config

TOKEN = "sink-test-token-not-a-secret"
BODY = json.dumps({"model": "m", "prompt": "how do I rotate a kubeconfig?"}).encode()


def test_beyond_loopback_needs_a_token_or_the_network_policy(monkeypatch):
    monkeypatch.delenv("TUNEOPS_SINK_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["monitor", "sink", "--host", "0.0.0.0"])
    assert isinstance(result.exception, UserError)
    assert "sink.auth.network_policy=true" in str(result.exception)
    for host in ("0.0.0.0", "10.0.3.7", "'::'"):
        cfg = load_monitor_config(overrides=[f"sink.host={host}"]).sink
        with pytest.raises(UserError, match="no token"):
            check_exposure(cfg, None)
        check_exposure(cfg, TOKEN)
        acknowledged = load_monitor_config(
            overrides=[f"sink.host={host}", "sink.auth.network_policy=true"]
        ).sink
        check_exposure(acknowledged, None)
    for host in ("127.0.0.1", "'::1'", "localhost"):
        check_exposure(load_monitor_config(overrides=[f"sink.host={host}"]).sink, None)


def test_config_mistakes_are_one_line():
    with pytest.raises(UserError, match=r"tls\.cert_file and tls\.key_file"):
        load_monitor_config(overrides=["sink.tls.cert_file=/x.pem"])
    with pytest.raises(UserError, match="path must differ"):
        load_monitor_config(overrides=["sink.path=/healthz"])
    with pytest.raises(UserError, match="bucket name is missing"):
        load_monitor_config(overrides=["sink.log=s3:///prefix"])


def test_a_set_token_guards_all_but_health(tmp_path, start_sink, logger_headers):
    sink = start_sink(
        "sink.rate=1.0", log=str(tmp_path / "p.jsonl"), env={"TUNEOPS_SINK_TOKEN": TOKEN}
    )
    try:
        with httpx.Client(base_url=sink.url, timeout=10) as http:
            assert http.post("/events", content=BODY, headers=logger_headers()).status_code == 401
            wrong = {**logger_headers(), "Authorization": "Bearer nope"}
            assert http.post("/events", content=BODY, headers=wrong).status_code == 401
            assert http.get("/metrics").status_code == 401
            assert http.get("/healthz").status_code == 200
            right = {**logger_headers(), "Authorization": f"Bearer {TOKEN}"}
            assert http.post("/events", content=BODY, headers=right).status_code == 200
            metrics = http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
        assert 'tuneops_sink_requests_total{status="401"} 2.0' in metrics
    finally:
        sink.stop()
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 1


def _self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tuneops-sink")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_https_with_the_loggers_ca(tmp_path, start_sink, logger_headers):
    """The logger posts to an https:// url when it trusts the sink's CA: the sink serves TLS."""
    cert_file, key_file = _self_signed(tmp_path)
    sink = start_sink(
        "sink.rate=1.0",
        f"sink.tls.cert_file={cert_file}",
        f"sink.tls.key_file={key_file}",
        log=str(tmp_path / "p.jsonl"),
        scheme="https",
        ca=str(cert_file),
    )
    try:
        with httpx.Client(base_url=sink.url, timeout=10, verify=str(cert_file)) as http:
            assert http.post("/events", content=BODY, headers=logger_headers()).status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{sink.url}/healthz", timeout=5)  # not trusted without the CA
    finally:
        sink.stop()
    assert "rotate a kubeconfig" in (tmp_path / "p.jsonl").read_text()


def test_a_taken_port_or_an_unwritable_log_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["monitor", "sink", "--port", str(port)])
    assert isinstance(result.exception, UserError) and "is taken" in str(result.exception)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = CliRunner().invoke(
        app, ["monitor", "sink", "--port", "0", "--log", str(blocker / "prompts.jsonl")]
    )
    assert isinstance(result.exception, UserError) and "cannot write" in str(result.exception)
