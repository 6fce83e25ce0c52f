# syntax=docker/dockerfile:1
# BridgeX index builder: CUDA torch + transformers, entrypoint `bridgex-index`.
#   docker build -f deploy/builder.Dockerfile -t bridgex-builder .      (from the repository root)
#   docker run --gpus all -v bridgex-index:/index bridgex-builder build --model M --langs en,de,sw \
#       --dictionaries cldr --out /index/bridgex.duckdb --device cuda --dtype bfloat16
# The torch wheels on PyPI for Linux x86_64 are CUDA builds that carry their CUDA runtime as
# nvidia-* wheels, so a slim Python base is enough: the host only needs the NVIDIA driver and the
# NVIDIA container toolkit. For another CUDA version, point PIP_EXTRA_INDEX_URL at the PyTorch wheel
# index of that CUDA version (--build-arg PIP_EXTRA_INDEX_URL=...).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE}
ARG PIP_EXTRA_INDEX_URL=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HOME=/cache/huggingface \
    INDEX_DIR=/index
RUN groupadd --system --gid 10001 bridgex \
    && useradd --system --uid 10001 --gid bridgex --create-home --home-dir /home/bridgex \
       --shell /usr/sbin/nologin bridgex \
    && mkdir -p /index /cache/huggingface \
    && chown bridgex:bridgex /index /cache/huggingface
WORKDIR /src
# README* : the readme when there is one (pyproject names it; the build works without it).
COPY pyproject.toml README* ./
COPY bridgex_index/ bridgex_index/
COPY index_builder/ index_builder/
COPY bridgex_serve/ bridgex_serve/
# The check fails the build if pip resolved a CPU-only torch.
RUN pip install --no-cache-dir "/src[build]" \
    && python -c "import torch, transformers; assert torch.version.cuda, 'torch without CUDA'"
# Build into /index/releases/<release>.duckdb, then publish by an atomic symlink swap (see deploy/README.md).
COPY --chmod=0755 deploy/build-index.sh /usr/local/bin/bridgex-build-index
USER 10001:10001
WORKDIR /home/bridgex
ENTRYPOINT ["bridgex-index"]
CMD ["--help"]
