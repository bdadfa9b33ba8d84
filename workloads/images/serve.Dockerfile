# syntax=docker/dockerfile:1
# The model server (`tuneops serve`) on CPU: KServe's ModelServer with the OpenAI-compatible
# routes, v1/v2 protocols and /metrics on one port. KServe's storage initializer downloads the
# model into /mnt/models before this container starts.
#
# Build from the repository root:  docker build -f workloads/images/serve.Dockerfile .

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- build: a virtual environment with the locked dependencies -----------------------------
FROM ${PYTHON_IMAGE} AS build
# A CPU-only torch wheel index may be given here (images.build_args in configs/deploy/<env>.yaml)
# to keep the CUDA libraries of the default torch wheel out of a CPU image.
ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Dependencies first (cached while only the code changes), then the project itself.
# Every file is checked against the sha256 its lock records; requirements.lock holds
# torch's CPU build, from the index given in PIP_EXTRA_INDEX_URL.
COPY requirements-build.lock requirements.lock requirements-nodeps.lock ./
RUN pip install --require-hashes --no-deps -r requirements-build.lock \
    && pip install --require-hashes --no-build-isolation -r requirements.lock \
    && pip install --require-hashes --no-deps -r requirements-nodeps.lock
COPY pyproject.toml README.md ./
COPY tuneops ./tuneops
COPY workloads ./workloads
COPY infra ./infra
COPY configs ./configs
# Editable: the package finds configs/ and data files beside its source (tuneops.core.paths).
RUN pip install --no-deps --no-build-isolation -e .

# ---- runtime: the venv, the configs, a non-root user --------------------------------------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TUNEOPS_CACHE_DIR=/tmp/tuneops-cache \
    HF_HOME=/tmp/hf-home
RUN groupadd --system --gid 10001 tuneops \
    && useradd --system --uid 10001 --gid tuneops --home-dir /app --shell /usr/sbin/nologin tuneops
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/v2/health/ready', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["tuneops"]
CMD ["serve", "--model", "/mnt/models", "--port", "8080"]
