#!/bin/sh
# A sharded reindex of one tenant as Fargate tasks: the prepare step, one
# run-task per shard (ECS gives a task no index, so each gets VECLOAD_SHARD
# as an environment override), a wait for all of them, then the finish
# step. A failed shard is retried once here, on a fresh task with no state:
# it reads what its shard already wrote from the store and pays only for
# the rest. Exit: 0 done; 1 a shard failed twice (rerun the script: done
# shards cost nothing again); 2 a step refused its settings.
#
#   deploy/ecs/run-sharded.sh TENANT [SHARDS]
#
# CLUSTER, SUBNETS, SECURITY_GROUP and BUCKET as in run-backfill.sh. Uses
# the task definition of task-definition.json (registered once).
set -eu
tenant=${1:?usage: run-sharded.sh TENANT [SHARDS]}
shards=${2:-4}
cluster=${CLUSTER:-rag}
subnets=${SUBNETS:-subnet-0123456789abcdef0,subnet-0fedcba9876543210}
security_group=${SECURITY_GROUP:-sg-0123456789abcdef0}
bucket=${BUCKET:-acme-rag-documents}

# The same target flags for every task, so they all name the same table.
target="\"load\", \"s3://$bucket/tenants/$tenant/\", \"--tenant\", \"$tenant\", \"--layout\", \"lightrag\", \"--no-state\", \"--report\", \"-\""

start() { # COMMAND-JSON-TAIL ENV-JSON -> task ARN
  aws ecs run-task --cluster "$cluster" --launch-type FARGATE \
    --task-definition vecload-reindex --count 1 \
    --started-by "vecload-$tenant" \
    --network-configuration "awsvpcConfiguration={subnets=[$subnets],securityGroups=[$security_group],assignPublicIp=DISABLED}" \
    --overrides "{\"containerOverrides\": [{\"name\": \"vecload\", \"command\": [$target$1], \"environment\": [$2]}]}" \
    --query 'tasks[0].taskArn' --output text
}

exit_code() { # TASK -> its exit code once stopped ("" if it never ran)
  while [ "$(aws ecs describe-tasks --cluster "$cluster" --tasks "$1" \
    --query 'tasks[0].lastStatus' --output text)" != STOPPED ]; do
    sleep 30
  done
  aws ecs describe-tasks --cluster "$cluster" --tasks "$1" \
    --query 'tasks[0].containers[0].exitCode' --output text
}

step() { # NAME: prepare or finish, once for the whole target
  code=$(exit_code "$(start ", \"--shards\", \"$shards\", \"--step\", \"$1\"" "")")
  echo "step $1: exit $code" >&2
  [ "$code" = 0 ] || exit "$( [ "$code" = 2 ] && echo 2 || echo 1 )"
}

step prepare
i=0
tasks=""
while [ "$i" -lt "$shards" ]; do
  tasks="$tasks $(start "" "{\"name\": \"VECLOAD_SHARD\", \"value\": \"$i/$shards\"}")"
  i=$((i + 1))
done
failed=0
i=0
for task in $tasks; do
  code=$(exit_code "$task")
  if [ "$code" != 0 ] && [ "$code" != 2 ]; then
    echo "shard $i/$shards: exit $code; retrying it once" >&2
    code=$(exit_code "$(start "" "{\"name\": \"VECLOAD_SHARD\", \"value\": \"$i/$shards\"}")")
  fi
  echo "shard $i/$shards: exit $code" >&2
  [ "$code" = 0 ] || failed=$((failed + 1))
  i=$((i + 1))
done
if [ "$failed" -gt 0 ]; then
  echo "$failed of $shards shards failed: the finish step waits for a rerun" >&2
  exit 1
fi
step finish
