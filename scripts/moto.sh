#!/usr/bin/env bash
# Installs the moto server (PyPI `moto[server]`), a real S3-compatible
# server the S3 tests talk to on loopback, into a venv and prints the path
# of its `moto_server` command.
#
#   scripts/moto.sh        install if needed; print the moto_server path
set -euo pipefail

DIR="${VECLOAD_MOTO_HOME:-/tmp/vecload-moto}"
BIN="$DIR/bin/moto_server"
if [ ! -x "$BIN" ] || ! "$DIR/bin/python" -c 'import moto.server' 2>/dev/null; then
  echo "moto.sh: installing moto[server] 5.1 into $DIR" >&2
  python3 -m venv "$DIR"
  "$DIR/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.1.*' >&2
fi
echo "$BIN"
