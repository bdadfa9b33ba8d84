"""``tuneops release analyze``: the verdict rules, the config checks, a Prometheus that cannot be
reached or keeps failing, and, end to end, a real Prometheus scraping real model servers on
loopback: a healthy canary climbs the ladder and is promoted, a failing one is rolled back."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml

from tuneops.core.errors import UserError
from workloads.deploy import gitops
from workloads.deploy.analyze import Verdict, decide, next_step
from workloads.deploy.config import load_deploy_config
from workloads.deploy.prometheus import PrometheusClient, PrometheusUnavailable

V1 = "s3://tuneops-dev-artifacts/1/models/m-v1/artifacts"
V2 = "s3://tuneops-dev-artifacts/1/models/m-v2/artifacts"
CLI = [sys.executable, "-m", "tuneops.cli"]


def _values(requests, error_rate=0.0, latency=0.4, ttft=0.05) -> dict:
    return {
        "requests": requests,
        "error_rate": error_rate,
        "latency_p95": latency,
        "ttft_p95": ttft,
    }


HEALTHY = _values(400)


@pytest.mark.parametrize(
    ("canary", "stable", "verdict", "why"),
    [
        (_values(400, error_rate=0.001, latency=0.5), HEALTHY, None, ""),
        # Too little traffic: nothing is judged, however bad it looks.
        (_values(12, error_rate=1.0), HEALTHY, Verdict.WAIT, "fewer than analysis.min_requests"),
        (_values(None), HEALTHY, Verdict.WAIT, "served no requests"),
        (_values(400, error_rate=0.5), HEALTHY, Verdict.ROLLBACK, "above the ceiling 2.00%"),
        # Under the ceiling, but over twice the stable's: 0% against 0.8% is no noise.
        (_values(400, error_rate=0.008), HEALTHY, Verdict.ROLLBACK, "over 2x the stable"),
        (_values(400, error_rate=0.004), HEALTHY, None, ""),  # at or below the floor
        (_values(400, latency=2.0), _values(400, latency=1.2), Verdict.ROLLBACK, "latency_p95"),
        (_values(400, latency=1.7), _values(400, latency=1.2), None, ""),
        # The stable served too little for a ratio to mean anything: ceilings only.
        (_values(400, latency=2.0), _values(5, latency=1.2), None, ""),
        (_values(400, ttft=None), HEALTHY, Verdict.WAIT, "no ttft_p95 data"),
        (_values(400, ttft=6.0), HEALTHY, Verdict.ROLLBACK, "ttft_p95 6.000 s is above"),
    ],
)
def test_verdicts(canary, stable, verdict, why):
    analysis = load_deploy_config("dev").analysis
    got, rows, reasons = decide(analysis, stable, canary)
    assert got is verdict, (rows, reasons)
    assert why in " ".join(reasons)
    assert [row.name for row in rows] == ["requests", "error_rate", "latency_p95", "ttft_p95"]


def test_the_ladder():
    assert [next_step([10, 25, 50], p) for p in (5, 10, 25, 49, 50, 90)] == [
        10,
        25,
        50,
        50,
        None,
        None,
    ]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ('analysis.requests=sum(x{{pod="{pod}"}})', "unknown placeholder(s) ['pod']"),
        ("analysis.steps=[25, 10]", "rising"),
        ("analysis.window=0m", "Prometheus duration"),
        ("alerts.serving.0.signal=throughput", "signal 'throughput' is not one of"),
        ("analysis.signals.error_rate.max_ratio=0.5", "greater than or equal to 1"),
    ],
)
def test_bad_analysis_config_is_one_clear_error(override, message):
    with pytest.raises(UserError) as raised:
        load_deploy_config("dev", overrides=[override])
    assert message in str(raised.value)


def _canary_tree(root: Path, *overrides: str):
    cfg = load_deploy_config("dev", overrides=list(overrides))
    gitops.render(cfg, model=V1, root=root, policy=False)
    gitops.promote(cfg, model=V2, canary=10, full=False, root=root, policy=False)
    return cfg


def _analyze(root: Path, *overrides: str) -> subprocess.CompletedProcess:
    sets = [word for item in overrides for word in ("--set", item)]
    return subprocess.run(
        [*CLI, "release", "analyze", "--env", "dev", "--root", str(root), *sets],
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_unreachable_prometheus_is_one_line_and_changes_nothing(tmp_path):
    from tuneops.core.process import free_port

    _canary_tree(tmp_path)
    before = sorted((p, p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file())
    url = f"http://127.0.0.1:{free_port()}"
    done = _analyze(tmp_path, f"analysis.prometheus_url={url}", "analysis.attempts=2")
    assert done.returncode == 3
    line = done.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert line.startswith(f"error: Prometheus at {url} is unreachable after 2 tries")
    assert "nothing was changed" in line
    assert sorted((p, p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file()) == before


def test_no_canary_is_refused(tmp_path):
    cfg = load_deploy_config("dev")
    gitops.render(cfg, model=V1, root=tmp_path, policy=False)
    done = _analyze(tmp_path)
    assert done.returncode == 2
    assert "runs no canary to analyze" in done.stderr and len(done.stderr.strip().splitlines()) == 1


class _Flaky(BaseHTTPRequestHandler):
    """Answers 503 to the first ``failures`` queries, then one sample."""

    failures = 2
    seen: list[str] = []  # noqa: RUF012 - shared by the handler instances of one test

    def do_GET(self) -> None:
        self.seen.append(self.path)
        if len(self.seen) <= self.failures:
            self.send_response(503)
            self.end_headers()
            return
        body = {
            "status": "success",
            "data": {
                "resultType": "vector",
                "result": [{"metric": {}, "value": [1700000000.0, "0.25"]}],
            },
        }
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def test_a_failing_prometheus_is_tried_again_then_given_up():
    _Flaky.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        client = PrometheusClient(url, attempts=3, backoff_s=0.01)
        assert client.value("sum(up)") == 0.25
        assert len(_Flaky.seen) == 3 and "/api/v1/query?query=sum%28up%29" in _Flaky.seen[0]
        _Flaky.seen = []
        with pytest.raises(PrometheusUnavailable, match=r"after 2 tries \(it answered HTTP 503\)"):
            PrometheusClient(url, attempts=2, backoff_s=0.01).value("sum(up)")
    finally:
        server.shutdown()
        server.server_close()


# --- end to end: a real Prometheus scraping real model servers ------------------------------

TOKEN = "analysis-test-token-not-a-secret"
SERVE = ["dtype=float32", "limits.max_new_tokens=16"]
# A request deadline no generation can meet: every answer is a 504, as with a canary shipped
# with a broken timeout.
FAILING = [*SERVE, "limits.request_timeout_s=0.001"]
REQUESTS = 30


def _scrape_job(name: str, server, namespace: str, isvc: str) -> dict:
    """What the rendered PodMonitor makes of a model pod: the pod's ``namespace`` and ``pod``
    labels on its series (here from relabelling, the port standing in for the pod's hash)."""
    return {
        "job_name": name,
        "scrape_interval": "1s",
        "authorization": {"type": "Bearer", "credentials": TOKEN},
        "static_configs": [{"targets": [f"{server.host}:{server.port}"]}],
        "relabel_configs": [
            {"target_label": "namespace", "replacement": namespace},
            {
                "source_labels": ["__address__"],
                "regex": r"127\.0\.0\.1:(\d+)",
                "target_label": "pod",
                "replacement": f"{isvc}-predictor-$1-x7k2p",
            },
        ],
    }


def _chat(server) -> int:
    body = {
        "model": "cloudops-assistant",
        "messages": [{"role": "user", "content": "What is a Kubernetes Service?"}],
        "max_tokens": 8,
    }
    reply = httpx.post(
        f"{server.openai_url}/chat/completions", json=body, headers=server.headers, timeout=60
    )
    return reply.status_code


def _wait_for(prom_url: str, query: str, at_least: float, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    client = PrometheusClient(prom_url)
    while time.monotonic() < deadline:
        value = client.value(query)
        if value is not None and value >= at_least:
            return
        time.sleep(0.5)
    raise AssertionError(f"Prometheus never saw {query} >= {at_least}")


def _requests_seen(namespace: str, isvc: str) -> str:
    return (
        f'sum(tuneops_serve_requests_total{{namespace="{namespace}", '
        f'pod=~"{isvc}-predictor-.*", route=~"/openai/v1/.*"}})'
    )


@pytest.fixture(scope="module")
def model_servers(tiny_model_dir):
    """A stable and a healthy canary, and a canary whose every answer fails."""
    from workloads.serve.process import ServerProcess

    servers = {
        "stable": ServerProcess(str(tiny_model_dir), token=TOKEN, overrides=SERVE),
        "good": ServerProcess(str(tiny_model_dir), token=TOKEN, overrides=SERVE),
        "bad": ServerProcess(str(tiny_model_dir), token=TOKEN, overrides=FAILING),
    }
    starters = [threading.Thread(target=s.start) for s in servers.values()]
    try:
        for t in starters:
            t.start()
        for t in starters:
            t.join()
        for name, server in servers.items():
            assert server.proc is not None and server.proc.poll() is None, name
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def _scrape_config(s: dict) -> dict:
    """team-a releases the healthy canary, team-b the failing one, over the same stable."""
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            _scrape_job("a-stable", s["stable"], "team-a", "cloudops-assistant"),
            _scrape_job("a-canary", s["good"], "team-a", "cloudops-assistant-canary"),
            _scrape_job("b-stable", s["stable"], "team-b", "cloudops-assistant"),
            _scrape_job("b-canary", s["bad"], "team-b", "cloudops-assistant-canary"),
        ],
    }


def _send_traffic(s: dict, prom_url: str) -> None:
    """REQUESTS chats to each server, then wait until Prometheus has scraped them all."""
    for key, expected in (("stable", 200), ("good", 200), ("bad", 504)):
        codes = {_chat(s[key]) for _ in range(REQUESTS)}
        assert codes == {expected}, key
    for team, isvc in (
        ("team-a", "cloudops-assistant"),
        ("team-a", "cloudops-assistant-canary"),
        ("team-b", "cloudops-assistant"),
        ("team-b", "cloudops-assistant-canary"),
    ):
        _wait_for(prom_url, _requests_seen(team, isvc), REQUESTS + 1)


def _climbs_the_ladder_and_is_promoted(cfg, root: Path, sets: tuple[str, ...]) -> None:
    for expected_rc, percent in ((10, 25), (10, 50), (0, None)):
        done = _analyze(root, *sets)
        assert done.returncode == expected_rc, done.stdout + done.stderr
        state = gitops.read_state(cfg, root)
        if percent is None:
            assert state.canary is None and state.stable.storage_uri == V2
            assert state.previous.storage_uri == V1
            assert "promoted to 100%" in done.stdout
        else:
            assert state.canary.percent == percent
            route = yaml.safe_load((root / "dev" / "serving" / "httproute.yaml").read_text())
            weights = [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]]
            assert weights == [100 - percent, percent]
            assert f"stepped to {percent}%" in done.stdout
        assert "error_rate" in done.stdout and "0.00%" in done.stdout
        assert "policy gate: " in done.stdout  # written through the render, gate and all


@pytest.mark.e2e
def test_analyze_promotes_a_healthy_canary_and_rolls_back_a_failing_one(
    start_prometheus, model_servers, tmp_path
):
    s = model_servers
    roots = {team: tmp_path / team for team in ("team-a", "team-b")}
    prom = start_prometheus(_scrape_config(s))
    sets = {
        team: (
            f"serving.namespace={team}",
            f"analysis.prometheus_url={prom.url}",
            "analysis.window=2m",
            f"analysis.min_requests={REQUESTS * 2 // 3}",
        )
        for team in roots
    }
    cfgs = {team: _canary_tree(roots[team], sets[team][0]) for team in roots}

    # One request each first, so every series exists before the traffic that counts.
    assert [_chat(s[k]) for k in ("stable", "good", "bad")] == [200, 200, 504]
    for team in roots:
        _wait_for(prom.url, _requests_seen(team, "cloudops-assistant-canary"), 1)

    # No traffic in the window yet: wait, and nothing changes.
    waiting = _analyze(roots["team-a"], *sets["team-a"])
    assert waiting.returncode == 11, waiting.stdout + waiting.stderr
    assert "waiting: the canary served" in waiting.stdout  # 0 or no requests: no traffic yet
    assert "fewer than analysis.min_requests (20); nothing changed" in waiting.stdout
    assert gitops.read_state(cfgs["team-a"], roots["team-a"]).canary.percent == 10

    _send_traffic(s, prom.url)
    # The healthy canary climbs the ladder (10 -> 25 -> 50) and is promoted.
    _climbs_the_ladder_and_is_promoted(cfgs["team-a"], roots["team-a"], sets["team-a"])

    # The failing canary is rolled back on its error rate; stable keeps all traffic.
    b_cfg, b_root = cfgs["team-b"], roots["team-b"]
    done = _analyze(b_root, *sets["team-b"])
    assert done.returncode == 12, done.stdout + done.stderr
    assert "error_rate 100.00% is above the ceiling 2.00%" in done.stdout
    assert "rolled back" in done.stdout
    state = gitops.read_state(b_cfg, b_root)
    assert state.canary is None and state.stable.storage_uri == V1
    assert not (b_root / "dev" / "serving" / "inferenceservice-canary.yaml").exists()

    # A query Prometheus refuses is a config error, not a verdict.
    _canary_tree(b_root, sets["team-b"][0])
    bad = _analyze(b_root, *sets["team-b"], "analysis.signals.ttft_p95.query=sum(rate(x[{window}])")
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "Prometheus refused the query" in bad.stderr
    assert gitops.read_state(b_cfg, b_root).canary.percent == 10
