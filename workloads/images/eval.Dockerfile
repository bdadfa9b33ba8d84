# syntax=docker/dockerfile:1
# Evaluation (`tuneops eval ...`) on CPU: benchmark generation, metrics and the champion
# comparison, run as a job in the continuous-training workflow.
#
# Build from the repository root:  docker build -f workloads/images/eval.Dockerfile .

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- build ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
# A CPU-only torch wheel index may be given here (images.build_args in configs/deploy/<env>.yaml)
# to keep the CUDA libraries of the default torch wheel out of a CPU image.
ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
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

# ---- runtime -------------------------------------------------------------------------------
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
ENTRYPOINT ["tuneops"]
CMD ["eval", "--help"]
