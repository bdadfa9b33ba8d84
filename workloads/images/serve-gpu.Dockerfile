# syntax=docker/dockerfile:1
# The model server on GPU nodes (`tuneops serve`, CUDA runtime base): the InferenceService
# of environments that serve on GPU (configs/deploy/<env>.yaml, serving.image: serve-gpu). The
# CUDA build of torch comes with the locked torch wheel and its NVIDIA libraries.
#
# Build from the repository root:  docker build -f workloads/images/serve-gpu.Dockerfile .

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

# ---- build: the interpreter and a venv with the locked dependencies ------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
RUN python -m venv --copies /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Every file is checked against the sha256 its lock records; requirements-gpu.lock holds
# torch's CUDA build and the CUDA libraries it needs.
COPY requirements-build.lock requirements-gpu.lock requirements-nodeps.lock ./
RUN pip install --require-hashes --no-deps -r requirements-build.lock \
    && pip install --require-hashes --no-build-isolation -r requirements-gpu.lock \
    && pip install --require-hashes --no-deps -r requirements-nodeps.lock
COPY pyproject.toml README.md ./
COPY tuneops ./tuneops
COPY workloads ./workloads
COPY infra ./infra
COPY configs ./configs
# Editable: the package finds configs/ and data files beside its source (tuneops.core.paths).
RUN pip install --no-deps --no-build-isolation -e .

# ---- runtime: CUDA base, the same interpreter, a non-root user ------------------------------
FROM ${CUDA_IMAGE}
# Shared libraries the interpreter from the build stage links against. Not pinned to package
# versions on purpose: the base image is pinned, and these take the distribution's security
# fixes at build time.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates libbz2-1.0 libexpat1 libffi8 liblzma5 libsqlite3-0 libssl3t64 zlib1g \
    && rm -rf /var/lib/apt/lists/*
ENV PATH=/opt/venv/bin:/usr/local/bin:$PATH \
    LD_LIBRARY_PATH=/usr/local/lib \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TUNEOPS_CACHE_DIR=/tmp/tuneops-cache \
    HF_HOME=/tmp/hf-home
COPY --from=build /usr/local/bin/python3.11 /usr/local/bin/python3.11
COPY --from=build /usr/local/lib/python3.11 /usr/local/lib/python3.11
COPY --from=build /usr/local/lib/libpython3.11.so.1.0 /usr/local/lib/
COPY --from=build /opt/venv /opt/venv
RUN groupadd --system --gid 10001 tuneops \
    && useradd --system --uid 10001 --gid tuneops --home-dir /app --shell /usr/sbin/nologin tuneops
WORKDIR /app
COPY --from=build /app /app
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/v2/health/ready', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["tuneops"]
CMD ["serve", "--model", "/mnt/models", "--port", "8080"]
