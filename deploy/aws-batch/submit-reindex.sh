#!/bin/sh
# A sharded reindex of one tenant on AWS Batch (Fargate): a prepare job, an
# array job of N workers that depends on it, and a finish job that depends
# on the whole array (it runs only once every child has succeeded). Batch
# retries a failed child up to 3 times (exit 2, a refused setting, is not
# retried); a retried child reads what its shard already wrote from the
# store and pays only for the rest.
#
#   deploy/aws-batch/submit-reindex.sh TENANT [SHARDS]
#
# QUEUE and BUCKET override the defaults. The job definition is
# deploy/aws-batch/job-definition.json, registered once with
#   aws batch register-job-definition --cli-input-json file://deploy/aws-batch/job-definition.json
# Each child gets AWS_BATCH_JOB_ARRAY_INDEX and AWS_BATCH_JOB_ARRAY_SIZE
# from Batch: vecload reads its shard from them.
set -eu
tenant=${1:?usage: submit-reindex.sh TENANT [SHARDS]}
shards=${2:-4}
queue=${QUEUE:-vecload-fargate}
bucket=${BUCKET:-acme-rag-documents}
source="s3://$bucket/tenants/$tenant/"
[ "$shards" -ge 2 ] || { echo "an array job has 2 to 10,000 children; run one task for 1" >&2; exit 2; }

# The same target flags for every step, so they name the same table.
target="\"load\", \"$source\", \"--tenant\", \"$tenant\", \"--layout\", \"lightrag\", \"--no-state\", \"--report\", \"-\""

submit() { # NAME COMMAND-JSON [EXTRA-ARGS...]
  name=$1; cmd=$2; shift 2
  aws batch submit-job --job-queue "$queue" --job-definition vecload-reindex \
    --job-name "vecload-$tenant-$name" \
    --container-overrides "{\"command\": [$cmd]}" \
    --query jobId --output text "$@"
}

prepare=$(submit prepare "$target, \"--shards\", \"$shards\", \"--step\", \"prepare\"")
workers=$(submit workers "$target" \
  --array-properties "size=$shards" \
  --depends-on "jobId=$prepare")
finish=$(submit finish "$target, \"--shards\", \"$shards\", \"--step\", \"finish\"" \
  --depends-on "jobId=$workers")
echo "tenant $tenant: prepare $prepare, workers $workers ($shards shards), finish $finish" >&2
echo "$finish"
