"""The bearer-token gate in front of every route: only reads of the named probes pass without it."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from workloads.serve.middleware import BearerAuth

TOKEN = "s3cret"
OPEN = ["/", "/metrics", "/v2/health/live", "/v2/health/ready"]


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
    ["/v2/health/live", "/v2/health/ready", "/metrics", "/v1/models/m", "/v2/models/m/ready"],
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
        ("DELETE", "/metrics"),
        ("POST", "/v2/models/m/infer"),
        ("POST", "/v2/repository/models/m/unload"),
        ("GET", "/v2/models/m/versions/1:x/ready"),
        ("GET", "/openai/v1/models"),
        ("GET", "/admin"),
        ("GET", "/no/such/route"),
    ],
)
def test_everything_else_needs_the_token(client, method, path):
    anon = client.request(method, path)
    assert anon.status_code == 401, (method, path)
    assert anon.headers["www-authenticate"] == "Bearer"
    assert anon.json()["error"]["code"] == "invalid_api_key"
    wrong = client.request(method, path, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = client.request(method, path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 200 and right.json() == {"reached": path}
