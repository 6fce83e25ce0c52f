# syntax=docker/dockerfile:1
# BridgeX serving proxy: the OpenAI-compatible front of a vLLM server. No torch in this image.
#   docker build -f deploy/proxy.Dockerfile -t bridgex-proxy .      (from the repository root)
# The index is mounted read-only at /index (BRIDGEX_INDEX); the upstream URL comes from BRIDGEX_UPSTREAM.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS wheels
WORKDIR /src
# README* : the readme when there is one (pyproject names it; the build works without it).
COPY pyproject.toml README* ./
COPY bridgex_index/ bridgex_index/
COPY bridgex_serve/ bridgex_serve/
# Wheels of the package and of every dependency of the `serve` extra; the final stage installs them offline.
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[serve]"

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    BRIDGEX_INDEX=/index/bridgex.duckdb \
    BRIDGEX_HOST=0.0.0.0 \
    BRIDGEX_PORT=8080
RUN groupadd --system --gid 10001 bridgex \
    && useradd --system --uid 10001 --gid bridgex --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin bridgex \
    && mkdir /index \
    && chown bridgex:bridgex /index
# Offline install from the wheels of the first stage (they fix every version, hence DL3013 is moot).
# The last command fails the build if anything pulled torch in: the proxy must stay small.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels "bridgex[serve]" \
    && python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)"
USER 10001:10001
EXPOSE 8080
# /health is liveness (the process answers); /ready (index loaded, upstream reachable) is for load balancers.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('BRIDGEX_PORT', '8080') + '/health', timeout=4)"]
# Exec form: bridgex-serve is PID 1 and receives SIGTERM (graceful stop) and SIGHUP (reload the index).
ENTRYPOINT ["bridgex-serve"]
