#!/bin/sh
# One tenant's backfill as a one-off Fargate task, waited for, its exit
# code returned: 0 done, 1 incomplete (run it again: it resumes from the
# state on EFS and pays for nothing twice), 2 refused before anything was
# sent (fix the setting it names), 130 stopped (SIGTERM: resumable).
#
#   deploy/ecs/run-backfill.sh TENANT
#
# CLUSTER, SUBNETS (comma-separated), SECURITY_GROUP, BUCKET and
# REPORT_BUCKET override the defaults below. Registers nothing: the task
# definition is deploy/ecs/task-definition.json, registered once with
#   aws ecs register-task-definition --cli-input-json file://deploy/ecs/task-definition.json
set -eu
tenant=${1:?usage: run-backfill.sh TENANT}
cluster=${CLUSTER:-rag}
subnets=${SUBNETS:-subnet-0123456789abcdef0,subnet-0fedcba9876543210}
security_group=${SECURITY_GROUP:-sg-0123456789abcdef0}
bucket=${BUCKET:-acme-rag-documents}
reports=${REPORT_BUCKET:-acme-rag-reports}

# The tenant's own prefix, state file and report: a backfill never lists,
# writes or prunes another tenant's documents or rows.
overrides=$(cat <<JSON
{"containerOverrides": [{"name": "vecload", "command": [
  "load", "s3://$bucket/tenants/$tenant/", "--tenant", "$tenant", "--layout", "lightrag",
  "--state", "/state/$tenant.redb", "--prune",
  "--report", "s3://$reports/vecload/$tenant.json"]}]}
JSON
)

task=$(aws ecs run-task \
  --cluster "$cluster" \
  --launch-type FARGATE \
  --task-definition vecload-reindex \
  --count 1 \
  --started-by "vecload-backfill-$tenant" \
  --network-configuration "awsvpcConfiguration={subnets=[$subnets],securityGroups=[$security_group],assignPublicIp=DISABLED}" \
  --overrides "$overrides" \
  --query 'tasks[0].taskArn' --output text)
echo "started $task for tenant $tenant" >&2

# `aws ecs wait tasks-stopped` gives up after 10 minutes; a reindex takes longer.
while [ "$(aws ecs describe-tasks --cluster "$cluster" --tasks "$task" \
  --query 'tasks[0].lastStatus' --output text)" != STOPPED ]; do
  sleep 30
done
code=$(aws ecs describe-tasks --cluster "$cluster" --tasks "$task" \
  --query 'tasks[0].containers[0].exitCode' --output text)
echo "tenant $tenant: exit $code; report: s3://$reports/vecload/$tenant.json" >&2
case $code in
  '' | *[!0-9]*) exit 1 ;; # never ran (image pull, secrets): see the task's stoppedReason
  *) exit "$code" ;;
esac
