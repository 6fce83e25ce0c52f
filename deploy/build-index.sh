#!/bin/sh
# Build a BridgeX index into a new file and publish it by an atomic symlink swap.
# Runs inside the builder image (installed as `bridgex-build-index`); used by the compose
# `index-builder` service and the Kubernetes index-build Job. Settings come from the environment:
#   MODEL          model id or path (required): the same model vLLM serves
#   LANGS          comma-separated ISO 639-1 codes
#   DICTIONARIES   dictionary source for `bridgex-index build --dictionaries` (default: cldr)
#   NPROC          GPUs to use: 1 runs `bridgex-index build`, N > 1 runs
#                  `torchrun --standalone --nproc-per-node N -m index_builder build`
#   DEVICE, DTYPE  default cuda, bfloat16
#   INDEX_DIR      the index volume (default /index)
#   INDEX_RELEASE  name of this build (default: UTC time stamp); written to releases/<name>.duckdb
#   PUBLISH        true (default): point INDEX_DIR/bridgex.duckdb at the new file; false: only build
# Extra arguments are passed on to `build`. The proxy picks the new index up on POST /admin/reload
# or SIGHUP; the previous releases stay on the volume for a rollback.
set -eu

: "${MODEL:?MODEL is required: the model vLLM serves}"
LANGS="${LANGS:-en,de,fr,es,ru,zh,ja,ar,hi,sw,bn,te}"
DICTIONARIES="${DICTIONARIES:-cldr}"
NPROC="${NPROC:-1}"
DEVICE="${DEVICE:-cuda}"
DTYPE="${DTYPE:-bfloat16}"
INDEX_DIR="${INDEX_DIR:-/index}"
INDEX_RELEASE="${INDEX_RELEASE:-$(date -u +%Y%m%dT%H%M%SZ)}"
PUBLISH="${PUBLISH:-true}"

case "$NPROC" in
  '' | *[!0-9]* | 0) echo "bridgex-build-index: NPROC must be a positive integer, not '$NPROC'" >&2; exit 2 ;;
esac
case "$INDEX_RELEASE" in
  '' | *[!A-Za-z0-9._-]*) echo "bridgex-build-index: INDEX_RELEASE may hold only A-Z a-z 0-9 . _ -" >&2; exit 2 ;;
esac
case "$PUBLISH" in
  true | false) ;;
  *) echo "bridgex-build-index: PUBLISH must be true or false, not '$PUBLISH'" >&2; exit 2 ;;
esac

release="releases/$INDEX_RELEASE.duckdb"
out="$INDEX_DIR/$release"
mkdir -p "$INDEX_DIR/releases"
if [ -e "$out" ]; then
  echo "bridgex-build-index: $out exists; choose a new INDEX_RELEASE" >&2
  exit 1
fi

set -- build --model "$MODEL" --langs "$LANGS" --dictionaries "$DICTIONARIES" \
  --out "$out" --device "$DEVICE" --dtype "$DTYPE" "$@"
if [ "$NPROC" -gt 1 ]; then
  torchrun --standalone --nproc-per-node "$NPROC" -m index_builder "$@"
else
  bridgex-index "$@"
fi

if [ ! -s "$out" ]; then
  echo "bridgex-build-index: the build left no index at $out" >&2
  exit 1
fi
echo "bridgex-build-index: built $out"

if [ "$PUBLISH" = true ]; then
  # rename(2) over the old link is atomic: a reader sees the old index or the new one, never none.
  ln -sfn "$release" "$INDEX_DIR/.bridgex.duckdb.next"
  mv -Tf "$INDEX_DIR/.bridgex.duckdb.next" "$INDEX_DIR/bridgex.duckdb"
  echo "bridgex-build-index: $INDEX_DIR/bridgex.duckdb -> $release (reload the proxies: POST /admin/reload or SIGHUP)"
fi
