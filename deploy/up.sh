#!/usr/bin/env bash
# Starts deploy/compose.yaml from one command: builds the images (deploy/build-images.sh) and the
# task image `ecsd-busybox:latest`; the first time, makes a CA, the nodes' and the agents'
# certificates, a root key and the nodes' configs (kept in deploy/.secrets); gives each container
# only what it needs, in a volume of its own (`ecsd-secrets-node-N`: the CA certificate, the
# node's certificate, key and config, readable by the nodes' user only; `ecsd-secrets-agents`: the
# CA certificate, the agents' certificate, key and access key); the CA's key and the root and
# operator keys stay in deploy/.secrets. Starts the three nodes, makes an operator key and the
# agents' key with the root key, then starts the agents.
# Usage: deploy/up.sh [--debug]
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/build-images.sh "$@"
scripts/busybox-image.sh
source scripts/prereqs.sh
profile=release
if [ "${1:-}" = --debug ]; then profile=debug; fi
ecsd="$CARGO_TARGET_DIR/$profile/ecsd"
secrets=deploy/.secrets
compose=(docker-compose -p ecsd -f deploy/compose.yaml)

random() { tr -dc "$1" </dev/urandom | head -c "$2" || true; }

if [ ! -f "$secrets/node-3.toml" ]; then
  rm -rf "$secrets"
  mkdir -p "$secrets"
  chmod 700 "$secrets"
  "$ecsd" tls ca --dir "$secrets/tls" >/dev/null
  for n in 1 2 3; do
    "$ecsd" tls cert --dir "$secrets/tls" --node "$n" --host "node-$n" >/dev/null
  done
  "$ecsd" tls cert --dir "$secrets/tls" --agent agents >/dev/null
  root_id="AKIA$(random 'A-Z0-9' 16)"
  root_secret="$(random 'A-Za-z0-9' 40)"
  printf '[root]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$root_id" "$root_secret" > "$secrets/root-credentials"
  for n in 1 2 3; do
    cat > "$secrets/node-$n.toml" <<TOML
node_id = $n
data_dir = "/var/lib/ecsd"
api_addr = "0.0.0.0:8101"
raft_addr = "0.0.0.0:8201"
advertise_api_addr = "node-$n:8101"
advertise_raft_addr = "node-$n:8201"
bootstrap = true

[auth]
enabled = true
root_access_key_id = "$root_id"
root_secret_access_key = "$root_secret"

[tls]
ca_file = "/secrets/ca.pem"
cert_file = "/secrets/node-$n.pem"
key_file = "/secrets/node-$n-key.pem"

[[initial_members]]
id = 1
api_addr = "node-1:8101"
raft_addr = "node-1:8201"

[[initial_members]]
id = 2
api_addr = "node-2:8101"
raft_addr = "node-2:8201"

[[initial_members]]
id = 3
api_addr = "node-3:8101"
raft_addr = "node-3:8201"
TOML
  done
fi

# Each container's secrets into its own volume: $1 the volume, $2 the owner, then the files.
fill_volume() {
  local volume=$1 owner=$2
  shift 2
  docker volume create "$volume" >/dev/null
  tar -C "$secrets" -c --transform 's|.*/||' "$@" | docker run --rm -i -v "$volume:/s" ecsd-busybox:latest \
    sh -c "rm -rf /s/* && tar -C /s -x && chown -R $owner /s && chmod -R go-rwx /s && chmod 755 /s"
}
copy_secrets() {
  for n in 1 2 3; do
    fill_volume "ecsd-secrets-node-$n" 65532:65532 tls/ca.pem "tls/node-$n.pem" "tls/node-$n-key.pem" "node-$n.toml"
  done
  if [ -f "$secrets/agent-credentials" ]; then
    fill_volume ecsd-secrets-agents 0:0 tls/ca.pem tls/agent-agents.pem tls/agent-agents-key.pem agent-credentials
  else
    docker volume create ecsd-secrets-agents >/dev/null
  fi
}
copy_secrets

"${compose[@]}" up -d node-1 node-2 node-3
ca="$secrets/tls/ca.pem"
for _ in $(seq 1 120); do
  if curl -sf --cacert "$ca" https://127.0.0.1:18101/readyz >/dev/null; then break; fi
  sleep 0.5
done
curl -sf --cacert "$ca" https://127.0.0.1:18101/readyz >/dev/null || { echo "the nodes did not become ready" >&2; "${compose[@]}" logs --tail 50 >&2; exit 1; }

# $1 name, $2 role, $3 file, $4 profile: a key made with the root key, unless the file has it.
make_key() {
  [ -f "$secrets/$3" ] && return 0
  local answer
  answer=$(AWS_SHARED_CREDENTIALS_FILE="$secrets/root-credentials" AWS_PROFILE=root \
    "$ecsd" keys create --endpoint https://127.0.0.1:18101 --ca-bundle "$ca" --name "$1" --role "$2")
  python3 - "$answer" "$4" > "$secrets/$3" <<'PY'
import json, sys
key = json.loads(sys.argv[1])
print(f"[{sys.argv[2]}]\naws_access_key_id = {key['accessKeyId']}\naws_secret_access_key = {key['secretAccessKey']}")
PY
  chmod 600 "$secrets/$3"
}
make_key operator operator aws-credentials ecsd
make_key agents agent agent-credentials agent
copy_secrets
"${compose[@]}" up -d

cat <<TEXT
ecsd: three nodes and two agents are up (docker-compose -p ecsd -f deploy/compose.yaml ps).
Try:
  AWS_SHARED_CREDENTIALS_FILE=$secrets/aws-credentials AWS_PROFILE=ecsd \\
    aws ecs list-container-instances --endpoint-url https://127.0.0.1:18101 --ca-bundle $ca --region us-east-1
Stop and remove everything: deploy/down.sh
TEXT
