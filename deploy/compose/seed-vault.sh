#!/bin/sh
# Seeds the dev-mode Vault of docker-compose.yml, once per `docker compose up`:
#   - an AppRole `credential-broker` whose policy reads the provider secrets and the token encryption key;
#   - example secrets for the four providers (those the compose stand-ins accept, unless overridden, see below);
#   - a token encryption key at secret/broker/token-key, field `keys`;
#   - the AppRole role_id and secret_id as files in $APPROLE_DIR, readable only by the broker's user.
#
# Real sandbox keys: set KIVRA_CLIENT_ID, KIVRA_CLIENT_SECRET, KIGO_API_KEY, KIGO_PARTNER_ID,
# KLAVI_ACCESS_KEY, KLAVI_SECRET_KEY, SIR_GIVING_SECRET_KEY, SIR_GIVING_HMAC_SECRET,
# SIR_GIVING_PUBLIC_KEY, SIR_GIVING_WEBHOOK_SECRET in the environment (or .env) before `docker compose up`,
# and delete the base_url lines of deploy/compose/credentials.yaml (the stand-ins accept only the defaults).
set -eu

: "${VAULT_ADDR:?VAULT_ADDR is required}"
: "${VAULT_TOKEN:?VAULT_TOKEN is required (the dev root token)}"
APPROLE_DIR="${APPROLE_DIR:-/vault-approle}"
# The broker image runs as the `node` user (uid and gid 1000).
BROKER_UID="${BROKER_UID:-1000}"
ROLE=credential-broker

log() { echo "seed-vault: $*"; }

# depends_on already waits for the healthcheck; this covers a start without compose.
tries=0
until vault status >/dev/null 2>&1; do
  tries=$((tries + 1))
  if [ "$tries" -ge 30 ]; then log "Vault at $VAULT_ADDR did not answer"; exit 1; fi
  sleep 1
done

# Writes a KV v2 secret (mount `secret`, which dev mode enables) unless it exists: writing again would
# create a new version, which the brokers treat as a rotation and answer with a re-mint.
seed_secret() {
  path="$1"
  shift
  if vault kv get -mount=secret "$path" >/dev/null 2>&1; then
    log "secret/$path exists, left as is"
  else
    vault kv put -mount=secret "$path" "$@" >/dev/null
    log "wrote secret/$path"
  fi
}

# --- AppRole for the brokers ---------------------------------------------------------------------
if ! vault auth list -format=json | grep -q '"approle/"'; then
  vault auth enable approle >/dev/null
  log "enabled auth/approle"
fi

# The broker's policy, deploy/vault/policy.hcl (mounted by docker-compose.yml): read-only on the provider
# secrets (data for reads, metadata for the rotation check) and on the token key; token lookup-self and renew-self.
vault policy write "$ROLE" "${POLICY_FILE:-/seed/policy.hcl}" >/dev/null
log "wrote policy $ROLE"

# Short token TTLs so a local run exercises renewal and re-login; the secret_id never expires and may be
# used any number of times, because both replicas share it and log in again whenever renewal fails.
vault write "auth/approle/role/$ROLE" \
  token_policies="$ROLE" \
  token_ttl=20m \
  token_max_ttl=2h \
  secret_id_ttl=0 \
  secret_id_num_uses=0 >/dev/null
log "wrote auth/approle/role/$ROLE"

# --- Example secrets (field names as in providers.md) -----------------------------------------------
# The defaults are src/embedded/secrets.example.json, which the compose stand-ins accept.
seed_secret providers/kivra \
  client_id="${KIVRA_CLIENT_ID:-example-kivra-client}" \
  client_secret="${KIVRA_CLIENT_SECRET:-example-kivra-secret}"

seed_secret providers/kigo \
  api_key="${KIGO_API_KEY:-example-kigo-api-key}" \
  partner_id="${KIGO_PARTNER_ID:-example-partner}"

seed_secret providers/klavi \
  accessKey="${KLAVI_ACCESS_KEY:-example-klavi-access-key}" \
  secretKey="${KLAVI_SECRET_KEY:-example-klavi-secret-key}"

seed_secret providers/sir-giving \
  secretKey="${SIR_GIVING_SECRET_KEY:-sk_test_example0000000000000000}" \
  hmacSecret="${SIR_GIVING_HMAC_SECRET:-0000000000000000000000000000000000000000000000000000000000000000}" \
  publicKey="${SIR_GIVING_PUBLIC_KEY:-pk_test_example0000000000000000}" \
  webhookSecret="${SIR_GIVING_WEBHOOK_SECRET:-whsec_example000000000000000000}"

# --- Token encryption key (TOKEN_ENCRYPTION_KEY=vault:secret/broker/token-key#keys) ------------------
# "<key id>:<base64 of 32 random bytes>"; to rotate, put "k2:<new>,k1:<old>" (the first encrypts, all decrypt).
token_key="$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
if [ "${#token_key}" -ne 44 ]; then log "could not generate a 32-byte key"; exit 1; fi
seed_secret broker/token-key keys="k1:$token_key"

# --- AppRole login material for the brokers ----------------------------------------------------------
# The directory stays traversable (the broker's user is not its owner); the files inside are not readable by others.
mkdir -p "$APPROLE_DIR"
chmod 0755 "$APPROLE_DIR"
umask 077

# Hands a file written as $APPROLE_DIR/<name>.tmp to the broker's user, read-only, under its final name
# (a rename, so a broker never reads a half-written file).
install_login_file() {
  chown "$BROKER_UID:$BROKER_UID" "$APPROLE_DIR/$1.tmp"
  chmod 0400 "$APPROLE_DIR/$1.tmp"
  mv -f "$APPROLE_DIR/$1.tmp" "$APPROLE_DIR/$1"
  log "wrote $APPROLE_DIR/$1"
}

vault read -field=role_id "auth/approle/role/$ROLE/role-id" > "$APPROLE_DIR/role_id.tmp"
install_login_file role_id
# A fresh secret_id on every run; earlier ones stay valid (secret_id_ttl=0), so running brokers keep working.
vault write -f -field=secret_id "auth/approle/role/$ROLE/secret-id" > "$APPROLE_DIR/secret_id.tmp"
install_login_file secret_id
