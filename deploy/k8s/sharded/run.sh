#!/bin/sh
# A sharded reindex on EKS, in order: prepare, the Indexed Job of workers,
# finish. Kubernetes has no dependency between Jobs, so this waits for
# each. Exit: 0 done; 1 a step failed (see `kubectl logs`); rerunning the
# script is safe: prepare and finish are idempotent, and a worker finds
# what its shard already wrote in the store and pays only for the rest.
#
#   deploy/k8s/sharded/run.sh            # after kubectl apply -f ../reindex-job.yaml's
#                                        # ServiceAccount, ConfigMap and Secret
set -eu
here=$(dirname "$0")
ns=rag
step() {
  kubectl -n "$ns" delete --ignore-not-found job "$1" >/dev/null
  kubectl -n "$ns" apply -f "$here/$2"
  # Complete or Failed, whichever comes first.
  kubectl -n "$ns" wait --for=condition=Complete --timeout="$3" "job/$1" &
  ok=$!
  kubectl -n "$ns" wait --for=condition=Failed --timeout="$3" "job/$1" >/dev/null 2>&1 &
  failed=$!
  while kill -0 "$ok" 2>/dev/null && kill -0 "$failed" 2>/dev/null; do sleep 10; done
  if kill -0 "$ok" 2>/dev/null; then
    kill "$ok" 2>/dev/null || true
    echo "job/$1 failed: kubectl -n $ns logs job/$1" >&2
    exit 1
  fi
  kill "$failed" 2>/dev/null || true
  wait "$ok"
}
step vecload-reindex-acme-prepare prepare-job.yaml 1h
step vecload-reindex-acme-workers workers-job.yaml 24h
step vecload-reindex-acme-finish finish-job.yaml 6h
kubectl -n "$ns" logs job/vecload-reindex-acme-finish | tail -1
