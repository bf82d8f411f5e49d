#!/usr/bin/env bash
# Installs LightRAG itself (lightrag-hku 1.5.7, the version --layout lightrag
# targets) into a venv and prints its python: the tests use LightRAG's own
# storage classes to read what vecload wrote (scripts/lightrag_reads.py).
#
#   scripts/lightrag.sh        install if needed; print the venv's python
set -euo pipefail

DIR="${VECLOAD_LIGHTRAG_HOME:-/tmp/vecload-lightrag}"
PY="$DIR/bin/python"
if ! "$PY" -c 'import lightrag.kg.qdrant_impl, lightrag.kg.postgres_impl' 2>/dev/null; then
  echo "lightrag.sh: installing lightrag-hku 1.5.7 into $DIR" >&2
  python3 -m venv "$DIR"
  "$DIR/bin/pip" install --quiet --disable-pip-version-check \
    'lightrag-hku==1.5.7' 'qdrant-client==1.20.0' 'asyncpg==0.32.0' 'pgvector==0.5.1' >&2
fi
echo "$PY"
