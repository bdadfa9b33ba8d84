"""The ASGI middleware in front of every route: bearer tokens, repository routes, body limits."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from workloads.serve.config import AuthSection
from workloads.serve.middleware import BearerAuth

TOKEN = "s3cret"
OPEN = AuthSection().open_paths  # the defaults: the two health probes


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "HEAD", "POST", "PUT", "DELETE"])
    async def reached(request: Request) -> dict:
        return {"reached": request.url.path}

    app.add_middleware(BearerAuth, token=TOKEN, open_paths=OPEN)
    return TestClient(app)


@pytest.mark.parametrize(
    "path",
    ["/v2/health/live", "/v2/health/ready", "/v1/models/m", "/v2/models/m/ready"],
)
def test_probes_are_open_to_reads(client, path):
    assert client.get(path).status_code == 200
    assert client.head(path).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/models/m:predict"),
        ("POST", "/v1/models/m:explain"),
        ("GET", "/v1/models/m:predict"),
        ("POST", "/v1/models/m"),  # a readiness path, but not a read
        ("POST", "/v2/health/ready"),
        ("DELETE", "/v2/health/live"),
        ("GET", "/metrics"),
        ("POST", "/v2/models/m/infer"),
        ("POST", "/v2/repository/models/m/unload"),
        ("GET", "/v2/models/m/versions/1:x/ready"),
        ("GET", "/v2/models/m/versions/1/ready"),  # the model has no versions: not a probe
        ("GET", "/"),  # says only what /v2/health/live says; no probe asks it
        ("GET", "/openai/v1/models"),
        ("GET", "/admin"),
        ("GET", "/no/such/route"),
    ],
)
def test_everything_else_needs_the_token(client, method, path):
    anon = client.request(method, path)
    assert anon.status_code == 401, (method, path)
    assert anon.headers["www-authenticate"] == "Bearer"
    # In the shape of the path's protocol: OpenAI's under /openai, KServe's elsewhere.
    error = anon.json()["error"]
    if path.startswith("/openai/"):
        assert error["code"] == "invalid_api_key" and error["type"] == "authentication_error"
    else:
        assert error.startswith("missing or wrong bearer token")
    wrong = client.request(method, path, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = client.request(method, path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 200 and right.json() == {"reached": path}


def _app(**auth) -> TestClient:
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def reached(request: Request) -> dict:
        return {"reached": request.url.path}

    app.add_middleware(BearerAuth, open_paths=OPEN, **auth)
    return TestClient(app)


def test_repository_routes_take_the_admin_token_only():
    client = _app(token=TOKEN, admin_token="admin")
    unload = "/v2/repository/models/m/unload"
    assert client.post(unload, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401
    assert client.post(unload, headers={"Authorization": "Bearer admin"}).status_code == 200
    # The admin token opens nothing else.
    assert (
        client.get("/openai/v1/models", headers={"Authorization": "Bearer admin"}).status_code
        == 401
    )


def test_an_admin_token_alone_keeps_other_routes_as_they_were():
    client = _app(token=None, admin_token="admin")
    assert client.get("/openai/v1/models").status_code == 200
    assert client.post("/v2/repository/models/m/load").status_code == 401


def test_repository_routes_need_an_admin_token_to_be_switched_on(monkeypatch):
    from tuneops.core.errors import UserError
    from workloads.serve.config import load_serve_config, read_admin_token

    monkeypatch.delenv("TUNEOPS_SERVE_ADMIN_TOKEN", raising=False)
    assert read_admin_token(load_serve_config()) is None  # off by default
    on = load_serve_config(overrides=["server.repository_routes=true"])
    with pytest.raises(UserError, match="TUNEOPS_SERVE_ADMIN_TOKEN"):
        read_admin_token(on)
    monkeypatch.setenv("TUNEOPS_SERVE_ADMIN_TOKEN", "admin")
    assert read_admin_token(on) == "admin"


def test_repository_routes_off_answer_404_before_routing():
    from workloads.serve.middleware import RepositoryRoutesOff

    app = FastAPI()
    touched = []

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def reached(request: Request) -> dict:
        touched.append(request.url.path)
        return {"reached": request.url.path}

    app.add_middleware(RepositoryRoutesOff)
    client = TestClient(app)
    assert client.post("/v2/repository/models/m/unload").status_code == 404
    assert client.post("/v2/repository/models/m/load").status_code == 404
    assert touched == []
    assert client.post("/v2/models/m/infer").status_code == 200


def _echo_app(max_bytes: int) -> TestClient:
    from workloads.serve.middleware import BodyLimit

    app = FastAPI()

    @app.post("/{path:path}")
    async def echo(request: Request) -> dict:
        body = await request.body()
        return {"size": len(body), "head": body[:8].decode()}

    app.add_middleware(BodyLimit, max_bytes=max_bytes)
    return TestClient(app)


def test_a_body_within_the_limit_arrives_unchanged():
    client = _echo_app(1024)
    reply = client.post("/v2/models/m/infer", content=b"abcdefgh" * 128)
    assert reply.status_code == 200 and reply.json() == {"size": 1024, "head": "abcdefgh"}


def test_a_declared_large_body_is_413_before_it_is_read():
    client = _echo_app(1024)
    reply = client.post("/openai/v1/chat/completions", content=b"x" * 1025)
    assert reply.status_code == 413
    assert reply.json()["error"]["type"] == "invalid_request_error"
    assert "1024 bytes" in reply.json()["error"]["message"]
    assert client.post("/v2/models/m/infer", content=b"x" * 5000).json() == {
        "error": "request body over 1024 bytes (limits.max_body_bytes)"
    }


def test_an_undeclared_chunked_body_is_cut_off_at_the_limit():
    client = _echo_app(1024)

    def chunks():
        for _ in range(100):
            yield b"y" * 100

    reply = client.post("/openai/v1/completions", content=chunks())
    assert reply.status_code == 413
    assert client.post("/x", content=(b"z" * 100 for _ in range(10))).json()["size"] == 1000


def test_one_client_past_its_in_flight_limit_gets_429_with_retry_after():
    import asyncio

    import httpx

    from workloads.serve.middleware import PerClientLimit

    app = FastAPI()
    release = asyncio.Event()

    @app.post("/slow")
    async def slow() -> dict:
        await release.wait()
        return {"ok": True}

    @app.get("/v2/health/live")
    async def live() -> dict:
        return {"live": True}

    app.add_middleware(PerClientLimit, limit=2, exempt=["/v2/health/live"])

    async def run():
        first = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("10.0.0.1", 1)), base_url="http://t"
        )
        other = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("10.0.0.2", 1)), base_url="http://t"
        )
        held = [asyncio.ensure_future(first.post("/slow")) for _ in range(2)]
        await asyncio.sleep(0.05)
        refused = await first.post("/slow")
        probe = await first.get("/v2/health/live")  # probes are not counted
        third = asyncio.ensure_future(other.post("/slow"))  # another client is not affected
        await asyncio.sleep(0.05)
        release.set()
        done = await asyncio.gather(*held, third)
        again = await first.post("/slow")  # the slots are free once requests end
        return refused, probe, done, again

    refused, probe, done, again = asyncio.run(run())
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"].startswith("more than 2 requests in flight")
    assert probe.status_code == 200
    assert [r.status_code for r in done] == [200, 200, 200]
    assert again.status_code == 200
