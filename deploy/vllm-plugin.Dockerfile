# syntax=docker/dockerfile:1
# vLLM with BridgeX inside it: `vllm serve $MODEL --middleware bridgex_serve.vllm_middleware.BridgeXMiddleware`.
# One process and no extra hop, at the price of tying BridgeX to vLLM's Python environment.
#   docker build -f deploy/vllm-plugin.Dockerfile -t bridgex-vllm .      (from the repository root)
#   docker run --gpus all --ipc=host -e MODEL=google/gemma-3-1b-it -v bridgex-index:/index:ro \
#       -p 8000:8000 bridgex-vllm --tensor-parallel-size 1
ARG VLLM_IMAGE=vllm/vllm-openai:v0.32.0

FROM ${VLLM_IMAGE}
ENV BRIDGEX_INDEX=/index/bridgex.duckdb \
    PIP_NO_CACHE_DIR=1
WORKDIR /opt/bridgex
# README* : the readme when there is one (pyproject names it; the build works without it).
COPY pyproject.toml README* ./
COPY bridgex_index/ bridgex_index/
COPY bridgex_serve/ bridgex_serve/
# Our package without its dependencies, then the light dependencies of the `serve` extra (and the core
# ones) under a constraint file of everything the vLLM image already has: nothing of vLLM's moves.
RUN python3 -m pip list --format=freeze > /tmp/vllm-constraints.txt \
    && python3 -m pip install --no-cache-dir --no-deps . \
    && python3 -m pip install --no-cache-dir -c /tmp/vllm-constraints.txt \
       "numpy>=1.26" "duckdb>=1.1" "click>=8.1" "starlette>=0.40" "uvicorn>=0.30" "httpx>=0.27" \
       "lingua-language-detector>=2.0,<2.2" "prometheus-client>=0.20" "babel>=2.16" \
    && python3 -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('bridgex_serve.vllm_middleware') is None)" \
    && rm /tmp/vllm-constraints.txt
EXPOSE 8000
# vLLM's own /health and /metrics stay as they are. Extra arguments go to `vllm serve`.
ENTRYPOINT ["/bin/sh", "-c", "exec vllm serve \"${MODEL:?set MODEL to the model the index was built for}\" --middleware bridgex_serve.vllm_middleware.BridgeXMiddleware \"$@\"", "vllm-bridgex"]
CMD ["--host", "0.0.0.0", "--port", "8000"]
