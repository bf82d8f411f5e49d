#!/usr/bin/env bash
# Every benchmark of issue 7, each a ratio against a ceiling measured in the
# same run on the same machine, into target/bench/results.md:
#   embed    the embed stage vs the endpoint's capacity (C requests in flight x
#            batch / latency): --concurrency = C, and the capacity unknown
#            (--concurrency 2C; the server answers 429 above C); the stage
#            alone (benches/embed_stage.rs), then the whole pipeline
#   chunking the chunker vs a plain tokenizer pass (benches/chunking.rs)
#   pgvector the pgvector sink vs raw binary COPY, 1024 and 1536 dims, HNSW
#            built after the load in both (benches/pgvector_upload.rs)
#   qdrant   the Qdrant sink vs the bfb upload pattern (benches/qdrant_upload.rs)
#   memory   peak RSS of `vecload load` at 10k, 100k and 1M chunks of 1024 dims
#   python   vecload vs the script it replaces (benches/migrate_to_qdrant.py),
#            same corpus, endpoint and Qdrant
#   shards   1, 2 and 4 workers (--shard I/N) of one load where the local
#            model is the limit, each worker a 1-core task (taskset); the
#            ceiling is the machine's cores
#   recall   what the store-as-record lookup of a rerun without a state
#            file costs (time, memory) at 100k and 1M chunks
#   copy     `vecload copy` pgvector -> Qdrant and back, 100k x 1024-d, vs
#            the slower of the plain read and write loops (benches/copy.rs)
#
#   scripts/bench.sh                  all of it
#   scripts/bench.sh embed memory     only these parts
#
# Starts what it needs: PostgreSQL (scripts/pg.sh), the embedding test
# server, a Qdrant from PATH or ../shared/bin (qdrant and python are
# skipped, loudly, without QDRANT_URL or a `qdrant` binary), a venv for the
# Python script.
set -euo pipefail
cd "$(dirname "$0")/.."
# The workplace's prebuilt Qdrant 1.18.3 (and bfb), when there: never part
# of the project, only put on PATH.
[ -x ../shared/bin/qdrant ] && PATH="$(cd ../shared/bin && pwd):$PATH"
# Every run measures the endpoint: none may take vectors from the embedding cache.
export VECLOAD_CACHE=off
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(embed chunking pgvector qdrant memory python shards recall copy)
want() { local p; for p in "${parts[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }

cargo build --release --quiet
eval "$(scripts/pg.sh start)"
export VECLOAD_TEST_PG_URL
out=target/bench; mkdir -p "$out"
bin=./target/release
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# corpus N: N JSONL records of ~60 tokens (one chunk each), made once, in
# files of at most 50,000 records (~15 MB, under --max-file-mb).
corpus() {
  local n=$1 dir="$out/corpus-$1"
  # The marker sits beside the folder: inside, it would be walked too.
  if [ ! -f "$dir.done" ]; then
    rm -rf "$dir"; mkdir -p "$dir"
    python3 - "$n" "$dir" <<'PY'
import json, random, sys
random.seed(7)
words = "vector index tenant chunk embedding model query latency shard replica batch token cosine table collection payload filter".split()
n, d = int(sys.argv[1]), sys.argv[2]
for f in range(0, n, 50000):
    with open(f"{d}/records-{f // 50000:03}.jsonl", "w") as out:
        for i in range(f, min(n, f + 50000)):
            out.write(json.dumps({"content": f"Record {i}: " + " ".join(random.choice(words) for _ in range(40))}) + "\n")
PY
    touch "$dir.done"
  fi
  echo "$dir"
}

# server ARGS...: starts an embedding test server, sets $url and $server_pid.
server() {
  local log; log=$(mktemp)
  "$bin/embedding-test-server" "$@" > "$log" &
  server_pid=$!; pids+=("$server_pid")
  for _ in $(seq 100); do [ -s "$log" ] && break; sleep 0.05; done
  url=$(sed -n 's/^listening on //p' "$log"); rm -f "$log"
}

# qdrant_start: a Qdrant from PATH unless QDRANT_URL is set; false if none.
qdrant_start() {
  if [ -n "${QDRANT_URL:-}" ]; then return 0; fi
  command -v qdrant >/dev/null || return 1
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
  pids+=("$!")
  # The subshell execs qdrant: this is the server's pid, whose CPU the
  # Qdrant benchmark reads from /proc per variant.
  export BENCH_QDRANT_PID=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$http/readyz" >/dev/null && break; sleep 0.2; done
  export QDRANT_URL=http://127.0.0.1:$http QDRANT_GRPC_URL=http://127.0.0.1:$grpc
}

embed_part() {
  local records=${BENCH_RECORDS:-60000} latency_ms=${BENCH_LATENCY_MS:-100}
  local capacity=${BENCH_CAPACITY:-16} batch=${BENCH_BATCH:-64} dim=${BENCH_DIM:-256}
  local dir; dir=$(corpus "$records")
  local ceiling; ceiling=$(python3 -c "print($capacity * $batch / ($latency_ms / 1000))")
  echo "## Embed stage vs the endpoint's capacity"
  echo
  echo "The stage alone (benches/embed_stage.rs): the real embed stage fed as fast as it takes chunks, its output drained."
  echo
  BENCH_LATENCY_MS=$latency_ms BENCH_CAPACITY=$capacity BENCH_BATCH=$batch BENCH_DIM=$dim \
    cargo bench --quiet --bench embed_stage 2>/dev/null | sed -n '/^chunks/,$p'
  echo
  echo "The whole pipeline: $records JSONL records (one chunk each), batch $batch, endpoint latency ${latency_ms} ms, capacity $capacity requests in flight (429 above, Retry-After 1 s), dim $dim, into pgvector with the state file. Ceiling = $capacity x $batch / ${latency_ms} ms = ${ceiling%.*} vectors/s. *Sustained* is vectors over the time from the endpoint's first request to its last answer; *whole run* includes start-up, the last partial wave, the index and the final count."
  echo
  echo "| run | sustained vectors/s | ratio | whole run vectors/s | ratio | requests | 429s |"
  echo "|---|---|---|---|---|---|---|"
  local name conc
  for name in known unknown; do
    conc=$capacity; [ $name = unknown ] && conc=$((capacity * 2))
    server --dim "$dim" --latency-ms "$latency_ms" --capacity "$capacity" --retry-after 1
    local run_id="${name}_$(date +%s%N)" report="$out/embed-$name.json"
    "$bin/vecload" load "$dir" --quiet --progress none \
      --pg-url "$VECLOAD_TEST_PG_URL" --table "bench_embed_$run_id" --index none \
      --state "$out/state-$run_id.redb" \
      --embed-url "$url" --embed-model bench --embed-dim "$dim" \
      --batch-size "$batch" --concurrency "$conc" --report "$report" >/dev/null || true
    curl -sf "${url%/v1}/stats" > "$out/embed-$name-server.json"
    kill "$server_pid" 2>/dev/null || true
    python3 - "$report" "$out/embed-$name-server.json" "$ceiling" "$name" "$conc" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); s = json.load(open(sys.argv[2])); ceiling = float(sys.argv[3])
n = r["vectors_written"]
sustained = n / s["busy_seconds"]; whole = n / r["elapsed_seconds"]
print(f"| capacity {sys.argv[4]} (--concurrency {sys.argv[5]}) | {sustained:.0f} | {sustained/ceiling:.2f} | {whole:.0f} | {whole/ceiling:.2f} | {s['requests']} | {s['rejected']} |")
PY
    rm -f "$out/state-$run_id.redb"*
  done
  echo
}

chunking_part() {
  echo "## Chunking vs a plain tokenizer pass"
  echo
  cargo bench --quiet --bench chunking 2>/dev/null | sed -n '/^corpus/,$p'
  echo
}

pgvector_part() {
  echo "## pgvector sink vs raw binary COPY"
  echo
  cargo bench --quiet --bench pgvector_upload 2>/dev/null | sed -n '/^rows/,$p'
  echo
}

qdrant_part() {
  echo "## Qdrant sink vs the bfb upload pattern"
  echo
  if ! qdrant_start; then
    echo "=== SKIPPED: no QDRANT_URL and no \`qdrant\` on PATH ==="; echo; return
  fi
  cargo bench --quiet --bench qdrant_upload 2>/dev/null | sed -n '/^points/,$p'
  echo
  # Qdrant's own bfb, where the workplace has it: the same number of points
  # and dimension, its defaults (batch 100, 2 in flight), HNSW off
  # (indexing threshold 0), not waiting for indexing; random vectors and no
  # payload, so lighter points than either loop above. Timed whole
  # (collection creation included), as it prints nothing off a terminal.
  if command -v bfb >/dev/null; then
    local n=${BENCH_POINTS:-100000} dim=${BENCH_DIM:-384} t0 t1
    t0=$(date +%s.%N)
    bfb --uri "${QDRANT_GRPC_URL:-http://127.0.0.1:6334}" -n "$n" -d "$dim" \
      --indexing-threshold 0 --skip-wait-index --collection-name "bench_bfb_$$" >/dev/null 2>&1
    t1=$(date +%s.%N)
    python3 -c "print(f'bfb itself ({$n} random {$dim}-d points, no payload, its defaults): {$n / ($t1 - $t0):.0f} points/s')"
    curl -s -X DELETE "${QDRANT_URL}/collections/bench_bfb_$$" >/dev/null || true
    echo
  fi
}

copy_part() {
  echo "## Copy between stores vs the plain read and write loops"
  echo
  if ! qdrant_start; then
    echo "=== SKIPPED: no QDRANT_URL and no \`qdrant\` on PATH ==="; echo; return
  fi
  cargo bench --quiet --bench copy 2>/dev/null | sed -n '/^rows/,$p'
  echo
}

memory_part() {
  local sizes=${BENCH_MEMORY_SIZES:-"10000 100000 1000000"} dim=1024
  echo "## Memory: peak RSS by corpus size"
  echo
  echo "\`vecload load\` of N JSONL records (one chunk each) at $dim dims into pgvector (state file on, no index), endpoint without latency. Peak RSS from GNU time."
  echo
  echo "| chunks | peak RSS | vectors/s | elapsed |"
  echo "|---|---|---|---|"
  local n dir
  for n in $sizes; do
    dir=$(corpus "$n")
    server --dim $dim
    local run_id="mem_${n}_$(date +%s%N)" report="$out/memory-$n.json"
    /usr/bin/time -f '%M' -o "$out/memory-$n.rss" "$bin/vecload" load "$dir" --quiet --progress none \
      --pg-url "$VECLOAD_TEST_PG_URL" --table "bench_$run_id" --index none \
      --state "$out/state-$run_id.redb" --embed-url "$url" --embed-model bench \
      --embed-dim $dim --batch-size 128 --concurrency 4 --report "$report" >/dev/null || true
    kill "$server_pid" 2>/dev/null || true
    python3 - "$report" "$out/memory-$n.rss" "$n" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); kb = int(open(sys.argv[2]).read().split()[-1])
print(f"| {int(sys.argv[3]):,} | {kb/1024:.0f} MB | {r['vectors_written']/r['elapsed_seconds']:.0f} | {r['elapsed_seconds']:.0f} s |")
PY
    psql_drop "bench_$run_id"
    rm -f "$out/state-$run_id.redb"*
  done
  echo
}

# Big tables are dropped at once: the disk is not the benchmark's.
psql_drop() {
  scripts/pg.sh psql -qc "DROP TABLE IF EXISTS \"$1\"" >/dev/null 2>&1 || true
}

python_part() {
  local records=${BENCH_PY_RECORDS:-40000} latencies=${BENCH_PY_LATENCIES:-"100 300"}
  local capacity=${BENCH_PY_CAPACITY:-32} dim=${BENCH_DIM:-256}
  echo "## vecload vs migrate_to_qdrant.py"
  echo
  if ! qdrant_start; then
    echo "=== SKIPPED: no QDRANT_URL and no \`qdrant\` on PATH ==="; echo; return
  fi
  local dir; dir=$(corpus "$records")
  echo "$records JSONL records, an endpoint with capacity $capacity in flight, dim $dim, into Qdrant, at two endpoint latencies (the script waits for every answer, so its speed is set by the latency; vecload's by the capacity and the sink). The script: \`migrate_to_qdrant.py --source-docs DIR --tenant-id bench --batch-size 100\` (benches/, pinned in benches/requirements-migrate.txt): embed 100, upsert them (wait=true), next. vecload: \`vecload load DIR --sink qdrant --tenant bench --concurrency $capacity\` (state file on), once with the script's 100 inputs per request (the same requests: the speedup row) and once with its own default of 64 (more requests for the same vectors)."
  echo
  echo "| latency | run | vectors | seconds | vectors/s | speedup |"
  echo "|---|---|---|---|---|---|"
  local latency_ms stamp
  for latency_ms in $latencies; do
    server --dim "$dim" --latency-ms "$latency_ms" --capacity "$capacity" --retry-after 1
    stamp=$(date +%s%N)
    EMBEDDING_BINDING_HOST="$url" EMBEDDING_MODEL=bench EMBEDDING_DIM=$dim \
      scripts/bench_python.sh --source-docs "$dir" --tenant-id bench --batch-size 100 \
      --collection "bench_py_$stamp" --json-out "$out/python.json" > "$out/python.log" 2>&1 || true
    local batch
    for batch in 100 64; do
      "$bin/vecload" load "$dir" --quiet --progress none --sink qdrant --collection "bench_vl_${batch}_$stamp" \
        --tenant bench --embed-url "$url" --embed-model bench --embed-dim "$dim" \
        --batch-size "$batch" --concurrency "$capacity" --state "$out/state-py-$batch-$stamp.redb" \
        --report "$out/python-vecload-$batch.json" >/dev/null || true
    done
    kill "$server_pid" 2>/dev/null || true
    python3 - "$out/python.json" "$out/python-vecload-100.json" "$out/python-vecload-64.json" "$latency_ms" <<'PY'
import json, sys
lat = sys.argv[4]
try:
    p = json.load(open(sys.argv[1]))
except Exception as e:
    print(f"| {lat} ms | migrate_to_qdrant.py | failed: {e} (see target/bench/python.log) | | | |"); sys.exit()
pr = p["vectors_written"] / p["elapsed_seconds"]
print(f"| {lat} ms | migrate_to_qdrant.py (100 a request) | {p['vectors_written']} | {p['elapsed_seconds']:.1f} | {pr:.0f} | 1.0x |")
for path, what in ((sys.argv[2], "100 a request, as the script"), (sys.argv[3], "64 a request, its default")):
    v = json.load(open(path))
    vr = v["vectors_written"] / v["elapsed_seconds"]
    print(f"| {lat} ms | vecload ({what}) | {v['vectors_written']} | {v['elapsed_seconds']:.1f} | {vr:.0f} | {vr/pr:.1f}x |")
PY
    rm -f "$out/state-py-"*"-$stamp.redb"* "$out/python.json"
  done
  echo
}

shards_part() {
  local pages=${BENCH_SHARD_PAGES:-24} cores; cores=$(nproc)
  local books=(~/.rustup/toolchains/*/share/doc/rust/html/book) book=""
  [ -d "${books[0]}" ] && book=${books[0]}
  local model; model=$(scripts/model.sh)
  echo "## Shards: 1, 2 and 4 workers where the local model is the limit"
  echo
  if [ -z "$book" ]; then
    echo "SKIPPED: no Rust book under ~/.rustup (the toolchain's docs)"; echo; return
  fi
  local dir="$out/book-$pages"
  rm -rf "$dir"; mkdir -p "$dir"
  local files=("$book"/ch*.html)
  cp "${files[@]:0:$pages}" "$dir/"
  echo "$pages pages of the Rust book, all-MiniLM-L6-v2 on the CPU (\`--embed-provider local\`), into pgvector, \`--no-state\`. Each worker is pinned to one core (\`taskset -c\`, as a 1-vCPU task), worker i on core i mod $cores; the ceiling is $cores cores, so the best speedup is min(N, $cores). The last row is one unpinned process on the whole machine."
  echo
  echo "| workers | wall | speedup vs 1 | ceiling | of ceiling | rows |"
  echo "|---|---|---|---|---|---|"
  local n base=""
  for n in 1 2 4 unpinned; do
    local table="bench_shards_${n}_$(date +%s%N)" start end i pids_w=()
    local common=(load "$dir" --quiet --progress none --pg-url "$VECLOAD_TEST_PG_URL" --table "$table"
      --embed-provider local --embed-model-dir "$model" --embed-dim 384 --chunk-tokens 200 --chunk-overlap 20 --no-state)
    "$bin/vecload" "${common[@]}" --shards 4 --step prepare >/dev/null
    start=$(date +%s.%N)
    if [ "$n" = unpinned ]; then
      "$bin/vecload" "${common[@]}" >/dev/null
    else
      for i in $(seq 0 $((n - 1))); do
        taskset -c $((i % cores)) "$bin/vecload" "${common[@]}" --shard "$i/$n" >/dev/null &
        pids_w+=($!)
      done
      for i in "${pids_w[@]}"; do wait "$i"; done
    fi
    end=$(date +%s.%N)
    local rows; rows=$(scripts/pg.sh psql -tAc "SELECT count(*) FROM \"$table\"")
    python3 - "$n" "$start" "$end" "${base:-}" "$cores" "$rows" <<'PY'
import sys
n, start, end, base, cores, rows = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], int(sys.argv[5]), sys.argv[6]
wall = end - start
base = float(base) if base else wall
sp = base / wall
ceil = cores if n == "unpinned" else min(int(n), cores)
print(f"| {n} | {wall:.1f} s | {sp:.2f}x | {ceil}x | {sp / ceil:.2f} | {rows} |")
PY
    [ -z "$base" ] && base=$(python3 -c "print($end - $start)")
    psql_drop "$table"
  done
  echo
}

recall_part() {
  local sizes=${BENCH_RECALL_SIZES:-"100000 1000000"} dim=64
  echo "## The store as the record: a rerun without a state file"
  echo
  echo "N JSONL records (one chunk each) loaded at $dim dims into pgvector, then the same load again with \`--no-state\`: it reads the tenant's ids and content hashes in one streamed query, chunks everything and sends nothing. \`read\` is that query (from the log), \`rerun\` the whole second run, RSS its peak (GNU time)."
  echo
  echo "| chunks | first load | read from the store | rerun | requests | peak RSS of the rerun |"
  echo "|---|---|---|---|---|---|"
  local n dir
  for n in $sizes; do
    dir=$(corpus "$n")
    server --dim $dim
    local table="bench_recall_${n}_$(date +%s%N)" t0 t1 t2
    local common=(load "$dir" --progress log --pg-url "$VECLOAD_TEST_PG_URL" --table "$table" --index none
      --embed-url "$url" --embed-model bench --embed-dim $dim --batch-size 256 --concurrency 4 --no-state)
    t0=$(date +%s.%N)
    "$bin/vecload" "${common[@]}" --quiet >/dev/null
    t1=$(date +%s.%N)
    /usr/bin/time -f '%M' -o "$out/recall-$n.rss" "$bin/vecload" "${common[@]}" \
      --report "$out/recall-$n.json" >/dev/null 2>"$out/recall-$n.log"
    t2=$(date +%s.%N)
    kill "$server_pid" 2>/dev/null || true
    python3 - "$n" "$t0" "$t1" "$t2" "$out/recall-$n.log" "$out/recall-$n.json" "$out/recall-$n.rss" <<'PY'
import json, re, sys
n, t0, t1, t2 = int(sys.argv[1]), *map(float, sys.argv[2:5])
log = open(sys.argv[5]).read()
m = re.search(r"the store holds (\d+) rows.*?\(([\d.]+) s to read\)", log)
r = json.load(open(sys.argv[6])); kb = int(open(sys.argv[7]).read().split()[-1])
held, read = (m.group(1), m.group(2)) if m else ("?", "?")
print(f"| {n:,} ({held} held) | {t1 - t0:.0f} s | {read} s | {t2 - t1:.0f} s | {r['embed_requests']} | {kb/1024:.0f} MB |")
PY
    psql_drop "$table"
  done
  echo
}

{
  # The parts run in this pipeline's subshell, where the servers they start
  # are recorded: the subshell stops them itself (the outer trap sees none).
  trap cleanup EXIT
  echo "# vecload benchmarks ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB)"
  echo
  want embed && embed_part
  want chunking && chunking_part
  want pgvector && pgvector_part
  want qdrant && qdrant_part
  want memory && memory_part
  want python && python_part
  want shards && shards_part
  want recall && recall_part
  want copy && copy_part
  true
} | tee "$out/results.md"
