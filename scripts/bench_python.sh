#!/usr/bin/env bash
# Runs the Python baseline of issue #7 (benches/migrate_to_qdrant.py), the
# sequential embed-then-upsert script vecload replaces, with its pinned
# dependencies (benches/requirements-migrate.txt) in a venv of its own.
#
#   QDRANT_URL=http://127.0.0.1:6333 EMBEDDING_BINDING_HOST=http://127.0.0.1:8080/v1 \
#   EMBEDDING_MODEL=bench EMBEDDING_DIM=256 \
#   scripts/bench_python.sh --source-docs DIR --tenant-id T --batch-size 100 [--json-out FILE]
#
# Arguments and environment are passed through to the script.
#   VECLOAD_BENCH_PY_HOME  venv directory (default /tmp/vecload-bench-py), made if missing
#                          or if the requirements changed
#   PYTHON                 interpreter for the venv (default python3)
#   BENCH_PY_PROFILE=1     run under `python -m cProfile -s cumtime` (profile on stdout)
# tiktoken downloads its o200k_base vocabulary on first use; to work offline the
# vocabulary shipped in the tiktoken-rs crate (in ~/.cargo/registry) is put in
# TIKTOKEN_CACHE_DIR under the name tiktoken looks for.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv=${VECLOAD_BENCH_PY_HOME:-/tmp/vecload-bench-py}
reqs="$root/benches/requirements-migrate.txt"

if ! cmp -s "$reqs" "$venv/.requirements" 2>/dev/null; then
  echo "bench_python: creating venv in $venv" >&2
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$reqs" >&2
  cp "$reqs" "$venv/.requirements"
fi

# sha1 of https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken:
# the file name tiktoken caches that download under.
export TIKTOKEN_CACHE_DIR=${TIKTOKEN_CACHE_DIR:-$venv/tiktoken-cache}
cached="$TIKTOKEN_CACHE_DIR/fb374d419588a4632f3f557e76b4b70aebbca790"
if [ ! -s "$cached" ]; then
  vocab=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -path '*tiktoken-rs*/assets/o200k_base.tiktoken' 2>/dev/null | sort | tail -n 1 || true)
  if [ -n "$vocab" ]; then
    mkdir -p "$TIKTOKEN_CACHE_DIR"
    cp "$vocab" "$cached.tmp" && mv "$cached.tmp" "$cached"
  else
    echo "bench_python: no tiktoken-rs vocabulary found; tiktoken will download o200k_base" >&2
  fi
fi

if [ -n "${BENCH_PY_PROFILE:-}" ]; then
  exec "$venv/bin/python" -m cProfile -s cumtime "$root/benches/migrate_to_qdrant.py" "$@"
fi
exec "$venv/bin/python" "$root/benches/migrate_to_qdrant.py" "$@"
