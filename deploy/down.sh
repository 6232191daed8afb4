#!/usr/bin/env bash
# Stops deploy/compose.yaml and removes its containers, volumes, the tasks its agents started,
# and the secrets (deploy/.secrets and the volumes ecsd-secrets-*).
set -euo pipefail
cd "$(dirname "$0")/.."
docker-compose -p ecsd -f deploy/compose.yaml down -v --remove-orphans >/dev/null 2>&1 || true
# The tasks' containers, started by the agents on the host's engine.
ids=$(docker ps -aq --filter label=com.amazonaws.ecs.cluster=default 2>/dev/null || true)
if [ -n "$ids" ]; then docker rm -f $ids >/dev/null; fi
for volume in ecsd-secrets-node-1 ecsd-secrets-node-2 ecsd-secrets-node-3 ecsd-secrets-agents; do
  docker volume rm "$volume" >/dev/null 2>&1 || true
done
rm -rf deploy/.secrets
echo "ecsd: the compose deployment is removed"
