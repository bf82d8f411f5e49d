#!/usr/bin/env bash
# Benchmarks, each a ratio against a ceiling measured in the same run:
#   1. embed stage vs the endpoint's capacity (C requests in flight x batch / latency),
#      once with --concurrency = C and once with the capacity unknown (--concurrency 2C,
#      the server answers 429 above C),
#   2. chunking vs a plain tokenizer pass (benches/chunking.rs),
#   3. the Qdrant sink vs the bfb upload pattern on the same server
#      (benches/qdrant_upload.rs), when QDRANT_URL is set or `qdrant` is on PATH.
# Writes target/bench/results.md. Needs nothing but this repo (starts PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
eval "$(scripts/pg.sh start)"
out=target/bench; mkdir -p "$out"

records=${BENCH_RECORDS:-60000}
latency_ms=${BENCH_LATENCY_MS:-100}
capacity=${BENCH_CAPACITY:-16}
batch=${BENCH_BATCH:-64}
dim=${BENCH_DIM:-256}
corpus="$out/corpus"
if [ ! -f "$corpus/records-$records.jsonl" ]; then
  rm -rf "$corpus"; mkdir -p "$corpus"
  python3 - "$records" > "$corpus/records-$records.jsonl" <<'PY'
import json, random, sys
random.seed(7)
words = "vector index tenant chunk embedding model query latency shard replica batch token cosine table collection payload filter".split()
for i in range(int(sys.argv[1])):
    print(json.dumps({"content": f"Record {i}: " + " ".join(random.choice(words) for _ in range(40))}))
PY
fi

server_out=$(mktemp)
./target/release/embedding-test-server --dim "$dim" --latency-ms "$latency_ms" --capacity "$capacity" --retry-after 1 > "$server_out" &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$server_out"' EXIT
for _ in $(seq 50); do [ -s "$server_out" ] && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$server_out")
ceiling=$(python3 -c "print($capacity * $batch / ($latency_ms / 1000))")

embed_run() { # name concurrency
  local report="$out/embed-$1.json" run_id="$1_$(date +%s)"
  # A fresh table and state file each time: the state would (rightly) skip
  # everything a previous run wrote.
  ./target/release/vecload load "$corpus" --quiet --progress none \
    --pg-url "$VECLOAD_TEST_PG_URL" --table "bench_embed_$run_id" --index none \
    --state "$out/state-$run_id.redb" \
    --embed-url "$url" --embed-model bench --embed-dim "$dim" \
    --batch-size "$batch" --concurrency "$2" --report "$report" || true
  python3 - "$report" "$ceiling" "$1" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); ceiling = float(sys.argv[2])
rate = r["vectors_written"] / r["elapsed_seconds"]
print(f"| embed, capacity {'known' if sys.argv[3]=='known' else 'unknown'} (--concurrency {sys.argv[4]}) | {rate:.0f} vectors/s | {ceiling:.0f} | {rate/ceiling:.2f} | {r['embed_requests']} requests, {r['embed_retries']} retries, {r['failed_chunks']} failed |")
PY
}

qdrant_bench() {
  if [ -z "${QDRANT_URL:-}" ]; then
    if ! command -v qdrant >/dev/null; then
      echo "=== SKIPPED: no QDRANT_URL and no \`qdrant\` on PATH ==="
      return
    fi
    local dir http grpc
    dir=$(mktemp -d)
    read -r http grpc < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
    (cd "$dir" && QDRANT__SERVICE__HOST=127.0.0.1 QDRANT__SERVICE__HTTP_PORT=$http \
      QDRANT__SERVICE__GRPC_PORT=$grpc QDRANT__STORAGE__STORAGE_PATH=$dir/storage \
      QDRANT__STORAGE__SNAPSHOTS_PATH=$dir/snapshots QDRANT__TELEMETRY_DISABLED=true \
      QDRANT__LOG_LEVEL=WARN exec qdrant >/dev/null 2>&1) &
    local qpid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$http/readyz" >/dev/null && break; sleep 0.2; done
    QDRANT_URL=http://127.0.0.1:$http QDRANT_GRPC_URL=http://127.0.0.1:$grpc \
      cargo bench --quiet --bench qdrant_upload 2>/dev/null | sed -n '/^points/,$p'
    kill $qpid 2>/dev/null || true; wait $qpid 2>/dev/null || true; rm -rf "$dir"
  else
    cargo bench --quiet --bench qdrant_upload 2>/dev/null | sed -n '/^points/,$p'
  fi
}

{
  echo "# vecload benchmarks ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores)"
  echo
  echo "Embed stage: $records records, batch $batch, endpoint latency ${latency_ms} ms, capacity $capacity in flight (429 above), dim $dim, pgvector sink, whole run timed."
  echo
  echo "| measure | vecload | ceiling | ratio | notes |"
  echo "|---|---|---|---|---|"
  embed_run known "$capacity"
  embed_run unknown "$((capacity * 2))"
  echo
  echo "Chunking (o200k_base, 1200/100):"
  echo
  cargo bench --quiet --bench chunking 2>/dev/null | sed -n '/^corpus/,$p'
  echo
  echo "Qdrant sink vs the bfb upload pattern:"
  echo
  qdrant_bench
} | tee "$out/results.md"
